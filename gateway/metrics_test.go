package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/internal/oauthtest"
)

// TestCallAndAuthorizationServerMetrics: calls are counted by backend,
// catalogued tool, tier and outcome, and timed; a tool no catalogue lists
// is "other" however many names callers invent; the in-process AS counts
// registrations by attestation, tokens by grant, refusals by OAuth error.
func TestCallAndAuthorizationServerMetrics(t *testing.T) {
	s := newStack(t)
	reg := s.machineAgentReg("ci-bot")
	token := s.tokenFor(reg, "jira:read", "drive:read")
	if ok, why := s.call(token, "jira", "search_issues", map[string]any{"query": "SEC"}); !ok {
		t.Fatal(why)
	}
	if ok, _ := s.call(token, "drive", "read_file", map[string]any{"path": "/prod/secrets/db.env"}); ok {
		t.Fatal("the protected read was allowed")
	}
	for i := range 50 {
		// Names no catalogue lists: one label value between them.
		s.call(token, "jira", fmt.Sprintf("made_up_%d", i), map[string]any{})
	}
	if _, err := oauthtest.ClientCredentials(context.Background(), s.base, reg[0], "wrong-secret", s.resource, "jira:read"); err == nil {
		t.Fatal("a wrong secret got a token")
	}

	body := s.scrape()
	for _, want := range []string{
		`pbac_calls_total{backend="jira",outcome="allow",tier="ci_agent",tool="jira.search_issues"} 1`,
		`pbac_calls_total{backend="drive",outcome="deny",tier="ci_agent",tool="drive.read_file"} 1`,
		`pbac_calls_total{backend="jira",outcome="deny",tier="ci_agent",tool="other"} 50`,
		`pbac_call_seconds_count{backend="jira",outcome="allow",tool="jira.search_issues"} 1`,
		`pbac_as_registrations_total{attestation="software_statement",outcome="allowed"} 1`,
		`pbac_as_tokens_total{grant="client_credentials",outcome="issued"} 1`,
		// x/oauth2 tries the secret in the header, then in the body: two
		// refused requests.
		`pbac_as_tokens_total{grant="client_credentials",outcome="refused"} 2`,
		`pbac_as_refusals_total{endpoint="token",error="invalid_client"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(body, "pbac_as_"))
		}
	}
	if n := strings.Count(body, "\npbac_calls_total{"); n != 3 {
		t.Errorf("%d pbac_calls_total series, want 3:\n%s", n, grep(body, "pbac_calls_total"))
	}
}

func grep(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGrafanaDashboard: deploy/grafana-dashboard.json parses, every panel
// queries the Prometheus data source, and every metric it names is one
// the gateway serves — in a scrape after calls, a denial and a refused
// token, or one of the few that appear only once something rarer happened.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				Type string `json:"type"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("the dashboard does not parse: %v", err)
	}
	s := newStack(t)
	reg := s.machineAgentReg("ci-bot")
	token := s.tokenFor(reg, "jira:read", "drive:read")
	s.call(token, "jira", "search_issues", map[string]any{"query": "SEC"})
	s.call(token, "drive", "read_file", map[string]any{"path": "/prod/secrets/db.env"})
	_, _ = oauthtest.ClientCredentials(context.Background(), s.base, reg[0], "wrong-secret", s.resource)
	served := map[string]bool{}
	for _, l := range strings.Split(s.scrape(), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			served[f[2]] = true
		}
	}
	rarer := map[string]string{
		"pbac_stdio_processes":           "only with a stdio backend",
		"pbac_approval_decision_seconds": "once an approver decided",
		"pbac_as_sign_ins_total":         "once someone signed in with a password",
		"pbac_as_authorizations_total":   "once an authorization request came",
		"pbac_sessions_ended_total":      "once the gateway ended a session",
	}
	name := regexp.MustCompile(`\b(pbac|process)_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.Type != "prometheus" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries", p.Title, p.Datasource.Type, len(p.Targets))
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				family := m
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if f, ok := strings.CutSuffix(m, suffix); ok && served[f] || rarer[f] != "" {
						family = f
					}
				}
				if !served[family] && rarer[family] == "" {
					t.Errorf("panel %q queries %s, which the gateway does not serve", p.Title, m)
				}
			}
		}
	}
}
