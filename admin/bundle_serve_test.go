package admin_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// TestAdminServesTheActiveBundle: GET /bundles/pbac hands out the active
// bundle as uploaded, with its revision as ETag (304 on a match), to the
// admin token or the read-only bundle token, and to nobody else.
func TestAdminServesTheActiveBundle(t *testing.T) {
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New(e)
	t.Cleanup(func() { _ = reg.Close(ctx); _ = e.Close(ctx) })
	b, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	var tgz bytes.Buffer
	if err := b.WriteTarGz(&tgz); err != nil {
		t.Fatal(err)
	}
	// Uploaded bytes plus a trailing gzip member: served byte for byte.
	uploaded := append(bytes.Clone(tgz.Bytes()), tgz.Bytes()...)
	up, err := rego.ReadTarGz(bytes.NewReader(uploaded))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Activate(ctx, up, "upload"); err != nil {
		t.Fatal(err)
	}
	const adminToken, bundle = "admin-token-for-tests-0123456789", "bundle-token-for-tests-012345"
	h, err := admin.New(admin.Config{Token: adminToken, BundleToken: bundle, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path, bearer, ifNoneMatch string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if ifNoneMatch != "" {
			req.Header.Set("If-None-Match", ifNoneMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, raw
	}
	etag := `"` + b.Revision + `"`
	for _, tok := range []string{adminToken, bundle} {
		resp, raw := get("/bundles/pbac", tok, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != etag || !bytes.Equal(raw, uploaded) {
			t.Fatalf("GET: %d etag %s, %d bytes", resp.StatusCode, resp.Header.Get("ETag"), len(raw))
		}
		if resp, _ := get("/bundles/pbac", tok, etag); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match: %d", resp.StatusCode)
		}
	}
	if resp, _ := get("/bundles/pbac", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", resp.StatusCode)
	}
	if resp, _ := get("/bundles/other", bundle, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other bundle: %d", resp.StatusCode)
	}
	// The bundle token opens nothing else.
	if resp, _ := get("/admin/status", bundle, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bundle token on /admin/status: %d", resp.StatusCode)
	}
	if _, err := admin.New(admin.Config{Token: adminToken, BundleToken: "short", Registry: reg}); err == nil {
		t.Fatal("a short bundle token was accepted")
	}
}
