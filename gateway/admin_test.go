package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pbac-gateway/pbac/admin"
)

func TestAdminAPI(t *testing.T) {
	s := newStack(t)
	const token = "admin-token-for-tests-0123456789"
	h, err := admin.New(admin.Config{
		Token: token, Registry: s.registry, Audit: s.trail, Index: s.index,
		DeleteClient: func(r *http.Request, id string) error { return s.store.DeleteClient(r.Context(), id) },
		ListClients: func(r *http.Request) ([]admin.Client, error) {
			list, err := s.store.Clients(r.Context())
			out := make([]admin.Client, 0, len(list))
			for _, c := range list {
				out = append(out, admin.Client{ID: c.ID, Name: c.Name, Agent: c.Agent, GrantTypes: c.GrantTypes,
					TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, CreatedAt: c.CreatedAt})
			}
			return out, err
		},
		BackendHealth: func(r *http.Request) map[string]string { return s.gw.BackendHealth(r.Context()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path, bearer string, body []byte) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}

	t.Run("authentication", func(t *testing.T) {
		for _, bearer := range []string{"", "wrong-token-wrong-token-wrong-tok"} {
			if status, _ := do("GET", "/admin/status", bearer, nil); status != http.StatusUnauthorized {
				t.Fatalf("token %q: %d, want 401", bearer, status)
			}
		}
	})

	status, st := do("GET", "/admin/status", token, nil)
	first := st["policy"].(map[string]any)["version"].(string)
	if status != http.StatusOK || first == "" {
		t.Fatalf("status: %d %v", status, st)
	}
	if b, _ := st["backends"].(map[string]any); len(b) != 6 || !strings.HasPrefix(b["jira"].(string), "up") {
		t.Fatalf("backend health: %v", st["backends"])
	}

	t.Run("data update then rollback", func(t *testing.T) {
		if status, _ := do("PUT", "/admin/policy/data", token, []byte(`{"agents":`)); status != http.StatusBadRequest {
			t.Fatalf("bad data: %d", status)
		}
		b, _ := shipped()
		var data map[string]any
		_ = json.Unmarshal(b.Data, &data)
		data["note"] = "changed by the admin test"
		raw, _ := json.Marshal(data)
		status, info := do("PUT", "/admin/policy/data", token, raw)
		if status != http.StatusOK || info["version"] == first {
			t.Fatalf("data update: %d %v", status, info)
		}
		status, info = do("POST", "/admin/policy/rollback", token, nil)
		if status != http.StatusOK || info["version"] != first {
			t.Fatalf("rollback: %d %v", status, info)
		}
	})

	t.Run("bundle upload, shadow", func(t *testing.T) {
		if status, _ := do("POST", "/admin/policy/bundles", token, []byte("not a bundle")); status != http.StatusBadRequest {
			t.Fatalf("garbage upload: %d", status)
		}
		b, _ := shipped()
		var tgz bytes.Buffer
		if err := b.WriteTarGz(&tgz); err != nil {
			t.Fatal(err)
		}
		if status, info := do("POST", "/admin/policy/bundles?shadow=true", token, tgz.Bytes()); status != http.StatusOK {
			t.Fatalf("shadow upload: %d %v", status, info)
		}
		if status, _ := do("GET", "/admin/policy/shadow", token, nil); status != http.StatusOK {
			t.Fatalf("shadow stats: %d", status)
		}
		if status, _ := do("DELETE", "/admin/policy/shadow", token, nil); status != http.StatusOK {
			t.Fatalf("clear shadow: %d", status)
		}
		if status, info := do("POST", "/admin/policy/bundles", token, tgz.Bytes()); status != http.StatusOK {
			t.Fatalf("activate upload: %d %v", status, info)
		}
	})

	t.Run("audit query and client revocation", func(t *testing.T) {
		reg := s.machineAgentReg("ci-bot")
		tok := s.tokenFor(reg, "jira:read")
		if ok, _ := s.call(tok, "slack", "post_message", map[string]any{"channel": "general", "text": "x"}); ok {
			t.Fatal("ci bot posted to slack")
		}
		if _, err := s.waitAudit(auditFilterClient(reg[0], "deny")); err != nil {
			t.Fatal(err)
		}
		status, out := do("GET", "/admin/audit?decision=deny&client_id="+reg[0], token, nil)
		if recs, _ := out["records"].([]any); status != http.StatusOK || len(recs) == 0 {
			t.Fatalf("audit query: %d %v", status, out)
		}
		status, out = do("GET", "/admin/clients", token, nil)
		listed, _ := json.Marshal(out)
		if status != http.StatusOK || !strings.Contains(string(listed), reg[0]) || strings.Contains(string(listed), "secret_hash") {
			t.Fatalf("client list: %d %s", status, listed)
		}
		if status, _ := do("DELETE", "/admin/clients/"+reg[0], token, nil); status != http.StatusNoContent {
			t.Fatalf("revoke client: %d", status)
		}
		if ok, why := s.call(tok, "jira", "search_issues", map[string]any{"query": "SEC"}); ok || !strings.Contains(why, "Unauthorized") {
			t.Fatalf("a revoked client's token still works (%v, %s)", ok, why)
		}
	})
}

// TestAdminPropagation: with replicas to tell, a policy change answers 200
// with their confirmation when every live replica runs it, and 202 with
// who is pending (and why) when not; the change stays active here either
// way, and /admin/status shows the replicas' state.
func TestAdminPropagation(t *testing.T) {
	s := newStack(t)
	const token = "admin-token-for-tests-0123456789"
	var complete atomic.Bool
	h, err := admin.New(admin.Config{
		Token: token, Registry: s.registry,
		Propagate: func(ctx context.Context) (any, bool, error) {
			if complete.Load() {
				return map[string]any{"confirmed": []string{"a", "b"}}, true, nil
			}
			if _, ok := ctx.Deadline(); !ok {
				return nil, false, errors.New("the wait for the replicas is not bounded")
			}
			return map[string]any{"pending": []string{"b"}}, false, errors.New("b refused the bundle")
		},
		PolicySync: func(context.Context) any { return map[string]any{"head_seq": 7} },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	put := func(ctx context.Context, body []byte) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+"/admin/policy/data", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	b, _ := shipped()
	var data map[string]any
	_ = json.Unmarshal(b.Data, &data)

	complete.Store(true)
	data["note"] = "one"
	raw, _ := json.Marshal(data)
	status, out := put(context.Background(), raw)
	if status != http.StatusOK || out["replicas"] == nil || out["version"] == nil {
		t.Fatalf("confirmed change: %d %v", status, out)
	}

	complete.Store(false)
	data["note"] = "two"
	raw, _ = json.Marshal(data)
	status, out = put(context.Background(), raw)
	if status != http.StatusAccepted || out["replicas"] == nil || !strings.Contains(fmt.Sprint(out["error"]), "b refused the bundle") {
		t.Fatalf("unconfirmed change: %d %v, want 202 with the pending replicas and why", status, out)
	}
	info, _ := s.registry.Active()
	if info.Source != "admin data update" || info.Version != out["version"] {
		t.Errorf("the unconfirmed change is not active here: %+v", info)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&st)
	if sync, _ := st["policy_sync"].(map[string]any); sync["head_seq"] != float64(7) {
		t.Errorf("status policy_sync: %v", st["policy_sync"])
	}
}
