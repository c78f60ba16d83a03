package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/otlptest"
)

// TestUpExportsTraces runs the real `pbac up` with tracing turned on the
// standard way (OTEL_EXPORTER_OTLP_ENDPOINT, here over gRPC) against the
// OpenTelemetry Collector's own OTLP receiver: the CI bot's token request,
// one allowed and one denied call on the aggregated /mcp, each under the
// caller's trace, arrive as span trees; the audit trail finds each call by
// its trace id. The trees are logged as the receiver got them.
func TestUpExportsTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and the Collector's OTLP receiver")
	}
	rcv := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.GRPC)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "pbac-e2e")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	dataDir := t.TempDir()
	base, out := startUp(t, dataDir)
	m := regexp.MustCompile(`ci-bot\s+ci-bot\s+client_id=(\S+) client_secret=(\S+)`).FindStringSubmatch(out.String())
	admin := adminLine.FindStringSubmatch(out.String())
	if m == nil || admin == nil {
		t.Fatalf("no ci-bot credentials or admin URL in the output:\n%s", out)
	}

	const (
		tokenTrace = "11111111111111111111111111111111"
		allowTrace = "22222222222222222222222222222222"
		denyTrace  = "33333333333333333333333333333333"
		caller     = "aaaaaaaaaaaaaaaa"
	)
	parent := func(trace string) string { return "00-" + trace + "-" + caller + "-01" }

	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"jira:read jira:write"}, "resource": {base + "/mcp"}}
	status, body := rawHTTP(t, http.DefaultClient, http.MethodPost, base+"/oauth2/token", form.Encode(), map[string]string{
		"Content-Type": "application/x-www-form-urlencoded", "Traceparent": parent(tokenTrace),
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(m[1])+":"+url.QueryEscape(m[2])))})
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", status, body)
	}
	call := func(trace, tool, args string) string {
		t.Helper()
		status, body := rawHTTP(t, http.DefaultClient, http.MethodPost, base+"/mcp",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"`+parent(trace)+`"},"name":"`+tool+`","arguments":`+args+`}}`,
			map[string]string{"Authorization": "Bearer " + tok.AccessToken, "Content-Type": "application/json",
				"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool})
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", tool, status, body)
		}
		return body
	}
	if body := call(allowTrace, "jira.search_issues", `{"query":"SEC"}`); !strings.Contains(body, "SEC-12") {
		t.Fatalf("the allowed call: %s", body)
	}
	if body := call(denyTrace, "slack.post_message", `{"channel":"general","text":"hi"}`); !strings.Contains(body, "denied by policy") {
		t.Fatalf("the denied call: %s", body)
	}

	spans := rcv.Wait(t, 20*time.Second, "the three traces", func(s []otlptest.Span) bool {
		has := func(trace, name string) bool {
			return len(otlptest.Find(s, func(s otlptest.Span) bool { return s.TraceID == trace && s.Name == name })) > 0
		}
		return has(tokenTrace, "pbac.decide pbac/token") && has(allowTrace, "tools/call search_issues") &&
			has(denyTrace, "pbac.decide pbac/tool_call")
	})
	show := []string{"pbac.decision", "pbac.decision.allow", "pbac.decision.reasons", "gen_ai.tool.name", "pbac.backend",
		"http.response.status_code", "pbac.token.active"}
	for _, tc := range []struct {
		trace string
		root  string
		kids  []string
	}{
		{tokenTrace, "POST /oauth2/token", []string{"pbac.decide pbac/token"}},
		{allowTrace, "tools/call jira.search_issues", []string{"pbac.introspect", "pbac.decide pbac/tool_call", "tools/call search_issues"}},
		{denyTrace, "tools/call", []string{"pbac.introspect", "pbac.decide pbac/tool_call"}},
	} {
		in := otlptest.Find(spans, func(s otlptest.Span) bool { return s.TraceID == tc.trace })
		t.Logf("trace %s as the receiver got it:\n%s", tc.trace, otlptest.Tree(in, show...))
		roots := otlptest.Find(in, func(s otlptest.Span) bool { return s.ParentID == caller })
		if len(roots) != 1 || roots[0].Name != tc.root || roots[0].Kind != "server" || roots[0].Service != "pbac-e2e" {
			t.Errorf("trace %s: the span under the caller's is %+v, want one %q", tc.trace, roots, tc.root)
			continue
		}
		for _, kid := range tc.kids {
			if len(otlptest.Find(in, func(s otlptest.Span) bool { return s.Name == kid && s.ParentID == roots[0].SpanID })) != 1 {
				t.Errorf("trace %s: no %q under %q", tc.trace, kid, tc.root)
			}
		}
	}
	deny := otlptest.Find(spans, func(s otlptest.Span) bool { return s.TraceID == denyTrace && s.ParentID == caller })
	if len(deny) == 1 && (deny[0].Attr("pbac.decision") != "deny" || !strings.Contains(deny[0].Attr("pbac.decision.reasons"), "slack:write")) {
		t.Errorf("the denied call's span: %+v", deny[0])
	}

	adminToken, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	for trace, decision := range map[string]string{allowTrace: "allow", denyTrace: "deny"} {
		status, body := rawHTTP(t, http.DefaultClient, http.MethodGet, admin[1]+"/admin/audit?trace_id="+trace, "",
			map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(adminToken))})
		var recs struct {
			Records []struct {
				Decision string `json:"decision"`
				TraceID  string `json:"trace_id"`
				Tool     string `json:"tool"`
			} `json:"records"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &recs) != nil || len(recs.Records) != 1 ||
			recs.Records[0].Decision != decision || recs.Records[0].TraceID != trace {
			t.Errorf("GET /admin/audit?trace_id=%s: %d %s", trace, status, body)
		}
	}
}
