package dashboard

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/rego"
)

// TestBadDataIsRefusedAlikeByEveryEditor: every bad document of the shared
// table is refused by the admin API (PUT /admin/policy/data) and by the
// dashboard (PUT /ui/api/policy/data, what its data editor and its matrix
// send), with the same 422 and the same body naming the problem's JSON
// path; the active version stays. A good change still goes through both.
func TestBadDataIsRefusedAlikeByEveryEditor(t *testing.T) {
	reg := policytest.Registry(t)
	d := newDashWith(t, true, func(c *Config) { c.Registry = reg; c.DemoOperators = true })
	d.signIn("alice")
	api, err := admin.New(admin.Config{Token: testAdminToken, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	adminSrv := httptest.NewServer(api)
	t.Cleanup(adminSrv.Close)
	sendAdmin := func(method, path, contentType string, body []byte) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, adminSrv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		out := map[string]any{}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("admin answer is not JSON: %s", raw)
		}
		return resp.StatusCode, out
	}
	putAdmin := func(body []byte) (int, map[string]any) {
		t.Helper()
		return sendAdmin(http.MethodPut, "/admin/policy/data", "application/json", body)
	}
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := reg.Active()

	bad := policytest.BadDataDocuments(t)
	if len(bad) < 20 {
		t.Fatalf("only %d bad documents", len(bad))
	}
	for _, tc := range bad {
		t.Run(tc.Name, func(t *testing.T) {
			adminStatus, adminBody := putAdmin(tc.Data)
			dashStatus, dashBody := d.do("PUT", "/ui/api/policy/data", string(tc.Data))
			if adminStatus != http.StatusUnprocessableEntity || dashStatus != http.StatusUnprocessableEntity {
				t.Fatalf("admin %d %v, dashboard %d %v; want 422 from both", adminStatus, adminBody, dashStatus, dashBody)
			}
			if !reflect.DeepEqual(adminBody, dashBody) {
				t.Fatalf("the answers differ:\nadmin     %v\ndashboard %v", adminBody, dashBody)
			}
			problems, _ := adminBody["problems"].([]any)
			var paths []string
			for _, p := range problems {
				p := p.(map[string]any)
				if msg, _ := p["message"].(string); msg == "" {
					t.Errorf("problem %v says nothing", p)
				}
				paths = append(paths, p["path"].(string))
			}
			if !slices.Contains(paths, tc.Path) {
				t.Fatalf("problems %v do not name %q", problems, tc.Path)
			}
			// A shadow of the data is held to the same schema.
			if status, out := d.do("PUT", "/ui/api/policy/data?shadow=true", string(tc.Data)); status != http.StatusUnprocessableEntity || !reflect.DeepEqual(out, adminBody) {
				t.Fatalf("shadow: %d %v", status, out)
			}
			// So is an uploaded bundle with the data, against the schema
			// it carries, through either.
			nb := &rego.Bundle{Wasm: shipped.Wasm, Data: tc.Data, Schema: shipped.Schema, Vectors: shipped.Vectors, ContractVersion: shipped.ContractVersion}
			nb.Revision = rego.Revision(nb.Wasm, nb.Data)
			tgz, err := nb.TarGz()
			if err != nil {
				t.Fatal(err)
			}
			if status, out := sendAdmin(http.MethodPost, "/admin/policy/bundles", "application/gzip", tgz); status != http.StatusUnprocessableEntity || !reflect.DeepEqual(out, adminBody) {
				t.Fatalf("admin bundle upload: %d %v", status, out)
			}
			if status, out := d.do("POST", "/ui/api/policy/bundles", string(tgz), "Content-Type", "application/gzip"); status != http.StatusUnprocessableEntity || !reflect.DeepEqual(out, adminBody) {
				t.Fatalf("dashboard bundle upload: %d %v", status, out)
			}
		})
	}
	if now, _ := reg.Active(); now.Version != before.Version {
		t.Fatalf("a refused document became active: %s, was %s", now.Version, before.Version)
	}

	// What is not one JSON object is not policy data: 400 from both.
	for _, body := range []string{"{", "[1,2]", "null", `"data"`} {
		adminStatus, _ := putAdmin([]byte(body))
		dashStatus, _ := d.do("PUT", "/ui/api/policy/data", body)
		if adminStatus != http.StatusBadRequest || dashStatus != http.StatusBadRequest {
			t.Fatalf("%s: admin %d, dashboard %d; want 400 from both", body, adminStatus, dashStatus)
		}
	}

	// Data that fails an invariant vector of the bundle (dropping the
	// protection of production secrets) is refused alike, naming it.
	var unprotected map[string]any
	if err := json.Unmarshal(shipped.Data, &unprotected); err != nil {
		t.Fatal(err)
	}
	unprotected["protected_arguments"] = unprotected["protected_arguments"].([]any)[1:]
	raw, _ := json.Marshal(unprotected)
	adminStatus, adminBody := putAdmin(raw)
	dashStatus, dashBody := d.do("PUT", "/ui/api/policy/data", string(raw))
	if adminStatus != http.StatusUnprocessableEntity || dashStatus != http.StatusUnprocessableEntity || !reflect.DeepEqual(adminBody, dashBody) {
		t.Fatalf("admin %d %v, dashboard %d %v; want the same 422", adminStatus, adminBody, dashStatus, dashBody)
	}
	failed, _ := adminBody["failed_vectors"].([]any)
	if !slices.ContainsFunc(failed, func(v any) bool { return strings.HasPrefix(v.(string), "fm1 prod secrets") }) {
		t.Fatalf("failed_vectors %v do not name the prod-secrets vectors", failed)
	}

	// The matrix's move of a provider to another tier, through both.
	b := shipped
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	tiers := data["agents"].(map[string]any)["trust_tiers"].(map[string]any)
	tiers["read_only"] = append(tiers["read_only"].([]any), "ci-bot")
	tiers["ci_agent"] = []any{}
	moved, _ := json.Marshal(data)
	if status, out := d.do("PUT", "/ui/api/policy/data", string(moved)); status != http.StatusOK {
		t.Fatalf("dashboard: a good change: %d %v", status, out)
	}
	if status, out := putAdmin(b.Data); status != http.StatusOK {
		t.Fatalf("admin: the shipped data back: %d %v", status, out)
	}
}
