package admin_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// TestAdminStatusShowsTheContractVersion: /admin/status shows the contract
// version of the active bundle and the entrypoints the built-in fallback
// decides for it — a version 1 bundle, then a bundle of this binary's
// version uploaded through the admin API.
func TestAdminStatusShowsTheContractVersion(t *testing.T) {
	ctx := t.Context()
	reg := policytest.Empty(t)
	if _, err := reg.Activate(ctx, policytest.ContractV1(t), "v1"); err != nil {
		t.Fatal(err)
	}
	const token = "admin-token-for-tests-0123456789"
	h, err := admin.New(admin.Config{Token: token, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	status := func() (int, []string) {
		t.Helper()
		resp := do("GET", "/admin/status", nil)
		defer resp.Body.Close()
		var st struct {
			Policy struct {
				ContractVersion int      `json:"contract_version"`
				Fallbacks       []string `json:"fallbacks"`
			} `json:"policy"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status: %d %v", resp.StatusCode, err)
		}
		return st.Policy.ContractVersion, st.Policy.Fallbacks
	}
	if v, fb := status(); v != 1 || !slices.Equal(fb, []string{string(contract.Method)}) {
		t.Fatalf("a version 1 bundle: contract_version %d, fallbacks %v", v, fb)
	}

	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	var tgz bytes.Buffer
	if err := shipped.WriteTarGz(&tgz); err != nil {
		t.Fatal(err)
	}
	if resp := do("POST", "/admin/policy/bundles", tgz.Bytes()); resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	if v, fb := status(); v != contract.Version || fb != nil {
		t.Fatalf("the shipped bundle: contract_version %d, fallbacks %v", v, fb)
	}
}
