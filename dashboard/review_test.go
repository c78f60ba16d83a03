package dashboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/internal/policytest"
)

// TestReviewAgents: an operator sees a self-registered agent as pending,
// with the providers it may be approved as and their tiers; approves it
// as claude-code (audited under the operator), after which it is no
// longer pending and the agent list shows it as a developer agent; then
// rejects it. Someone who does not operate may do none of it, and an
// unknown provider or a missing CSRF header is refused.
func TestReviewAgents(t *testing.T) {
	ctx := t.Context()
	store, err := badger.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	as, err := asrv.New(asrv.Config{Issuer: "http://127.0.0.1:9", Resources: []string{"http://127.0.0.1:9/mcp"},
		Secret: bytes.Repeat([]byte("k"), 32), Store: store, Policy: policytest.Registry(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := asrv.NewClient(&asrv.RegistrationRequest{ClientName: "Claude Code", RedirectURIs: []string{"http://127.0.0.1:43111/callback"},
		GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone, SoftwareID: "claude-code"}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	trail := audit.NewTrail(nil)
	t.Cleanup(func() { _ = trail.Close(context.Background()) })
	records, stop := trail.Subscribe(8)
	defer stop()

	d := newDashWith(t, false, func(cfg *Config) {
		cfg.Audit, cfg.Clients = trail, store
		cfg.ListClients = func(r *http.Request) ([]admin.Client, error) {
			list, err := as.ClientsForReview(r.Context())
			out := make([]admin.Client, 0, len(list))
			for _, e := range list {
				out = append(out, admin.Client{ID: e.Client.ID, Name: e.Client.Name, Status: e.Status, RedirectURIs: e.Client.RedirectURIs,
					ClaimedSoftwareID: e.Client.ClaimedSoftwareID, NoTokenYet: e.NoTokenYet, ActsForNoPerson: e.Client.ActsForNoPerson()})
			}
			return out, err
		}
		cfg.ReviewClient = func(r *http.Request, id string, d admin.ClientDecision) (admin.Client, error) {
			c, err := as.ReviewClient(r.Context(), id, asrv.ClientReview{Status: d.Status, Provider: d.Provider, By: d.By, Comment: d.Comment, Machine: d.Machine})
			if errors.Is(err, asrv.ErrUnknownClient) {
				return admin.Client{}, fmt.Errorf("%w: %w", admin.ErrNoSuchClient, err)
			} else if errors.Is(err, asrv.ErrInvalidReview) {
				return admin.Client{}, fmt.Errorf("%w: %w", admin.ErrBadReview, err)
			} else if err != nil {
				return admin.Client{}, err
			}
			return admin.Client{ID: c.ID, Status: c.Review.Status}, nil
		}
	})
	pending := func() []any {
		t.Helper()
		status, out := d.do("GET", "/ui/api/agents/review", nil)
		if status != 200 {
			t.Fatalf("review list: %d %v", status, out)
		}
		return out["clients"].([]any)
	}

	d.signIn("bob")
	if status, _ := d.do("GET", "/ui/api/agents/review", nil); status != 403 {
		t.Fatalf("a person who does not operate lists pending agents: %d", status)
	}
	if status, _ := d.do("POST", "/ui/api/agents/"+c.ID+"/approve", map[string]string{"provider": "claude-code"}); status != 403 {
		t.Fatalf("a person who does not operate approves an agent: %d", status)
	}

	status, out := d.postSignIn(map[string]string{"admin_token": testAdminToken})
	if status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	d.csrf = out["csrf"].(string)
	if _, out := d.do("GET", "/ui/api/config", nil); out["review_agents"] != true {
		t.Fatalf("config does not offer the review: %v", out)
	}
	status, out = d.do("GET", "/ui/api/agents/review", nil)
	if list := out["clients"].([]any); status != 200 || len(list) != 1 || list[0].(map[string]any)["client_id"] != c.ID ||
		list[0].(map[string]any)["claimed_software_id"] != "claude-code" {
		t.Fatalf("pending agents: %d %v", status, out)
	}
	var developer bool
	for _, p := range out["providers"].([]any) {
		p := p.(map[string]any)
		developer = developer || (p["provider"] == "claude-code" && fmt.Sprint(p["tiers"]) == "[developer]")
	}
	if !developer {
		t.Fatalf("providers %v lack claude-code (developer)", out["providers"])
	}

	csrf := d.csrf
	d.csrf = ""
	if status, _ := d.do("POST", "/ui/api/agents/"+c.ID+"/approve", map[string]string{"provider": "claude-code"}, "Content-Type", "application/json"); status != 403 {
		t.Fatalf("an approval without the CSRF header: %d", status)
	}
	d.csrf = csrf
	for _, tc := range []struct {
		path string
		body any
		want int
	}{
		{"/ui/api/agents/" + c.ID + "/approve", map[string]string{"provider": "nobody-knows"}, 422},
		{"/ui/api/agents/" + c.ID + "/approve", map[string]string{}, 400},
		{"/ui/api/agents/no-such-agent/approve", map[string]string{"provider": "claude-code"}, 404},
	} {
		if status, out := d.do("POST", tc.path, tc.body, "Content-Type", "application/json"); status != tc.want {
			t.Fatalf("POST %s %v: %d %v; want %d", tc.path, tc.body, status, out, tc.want)
		}
	}
	if status, out := d.do("POST", "/ui/api/agents/"+c.ID+"/approve", map[string]string{"provider": "claude-code"}, "Content-Type", "application/json"); status != 200 {
		t.Fatalf("approve: %d %v", status, out)
	}
	if list := pending(); len(list) != 0 {
		t.Fatalf("pending after the approval: %v", list)
	}
	_, out = d.do("GET", "/ui/api/agents", nil)
	agent := out["agents"].([]any)[0].(map[string]any)
	if agent["provider"] != "claude-code" || agent["review"] != asrv.ReviewApproved || agent["tier"] != "developer" {
		t.Fatalf("the approved agent: %v", agent)
	}
	_, out = d.do("GET", "/ui/api/matrix", nil)
	for _, row := range out["rows"].([]any) {
		row := row.(map[string]any)
		if listed := fmt.Sprint(row["agents"]) == "[Claude Code]"; listed != (row["provider"] == "claude-code") {
			t.Fatalf("matrix row %v %v: the approved agent belongs to the claude-code row", row["provider"], row["agents"])
		}
	}
	select {
	case rec := <-records:
		if rec.Method != admin.MethodApproveClient || rec.ClientID != c.ID || rec.Subject != admin.OperatorAdmin || rec.AgentProvider != "claude-code" {
			t.Fatalf("audit record %+v", rec)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no audit record of the approval")
	}
	if status, out := d.do("POST", "/ui/api/agents/"+c.ID+"/reject", map[string]string{"comment": "not ours"}, "Content-Type", "application/json"); status != 200 {
		t.Fatalf("reject: %d %v", status, out)
	}
	if stored, err := store.Client(ctx, c.ID); err != nil || !stored.Rejected() || stored.Review.By != admin.OperatorAdmin {
		t.Fatalf("stored after the rejection: %+v %v", stored, err)
	}

	// A machine: approved only with machine use confirmed, which the
	// agent list then shows.
	m, _, _, err := asrv.NewClient(&asrv.RegistrationRequest{ClientName: "alice's Claude Code", GrantTypes: []string{"client_credentials"},
		TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateClient(ctx, m); err != nil {
		t.Fatal(err)
	}
	if list := pending(); len(list) != 1 || list[0].(map[string]any)["acts_for_no_person"] != true {
		t.Fatalf("the pending machine: %v", list)
	}
	status, out = d.do("POST", "/ui/api/agents/"+m.ID+"/approve", map[string]any{"provider": "claude-code"}, "Content-Type", "application/json")
	if msg, _ := out["error"].(string); status != 400 || !strings.Contains(msg, `"machine": true`) {
		t.Fatalf("a machine approved without machine use: %d %v", status, out)
	}
	if status, out := d.do("POST", "/ui/api/agents/"+m.ID+"/approve", map[string]any{"provider": "claude-code", "machine": true}, "Content-Type", "application/json"); status != 200 {
		t.Fatalf("a machine approved with machine use: %d %v", status, out)
	}
	_, out = d.do("GET", "/ui/api/agents", nil)
	for _, a := range out["agents"].([]any) {
		a := a.(map[string]any)
		if (a["client_id"] == m.ID) != (a["review_machine"] == true) {
			t.Fatalf("agent %v: review_machine %v", a["client_id"], a["review_machine"])
		}
	}
}
