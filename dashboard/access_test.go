package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/plugins"
)

// setOperatorGroups names these groups operators in the active policy data.
func setOperatorGroups(t *testing.T, reg *plugins.Registry, groups ...string) {
	t.Helper()
	b, ok := reg.ActiveBundle()
	if !ok {
		t.Fatal("no active bundle")
	}
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	data["identity"].(map[string]any)["operator_groups"] = groups
	raw, _ := json.Marshal(data)
	if _, err := reg.SetData(t.Context(), raw, "test"); err != nil {
		t.Fatal(err)
	}
}

// streamSubjects reads the audit stream until it has n records, and gives
// their subjects; emit runs once the stream is connected.
func (d *dash) streamSubjects(n int, emit func()) []string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.srv.URL+"/ui/api/audit/stream?client_id=agent-1", nil)
	resp, err := d.http.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		d.t.Fatalf("audit stream: %d", resp.StatusCode)
	}
	var subs []string
	sc := bufio.NewScanner(resp.Body)
	for len(subs) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == ": connected":
			emit()
		case strings.HasPrefix(line, "data: {\"ts\""):
			var rec audit.Record
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &rec); err != nil {
				d.t.Fatal(err)
			}
			subs = append(subs, rec.Subject)
		}
	}
	if len(subs) < n {
		d.t.Fatalf("the stream ended after %d of %d records: %v", len(subs), n, sc.Err())
	}
	return subs
}

// TestWhoSeesWhat: outside the demo, a person who does not operate sees
// only their own audit records — through the query, whatever subject it
// asks for, and through the live stream — may not read the policy document
// and data, and sees the trust-tier matrix of their own agents only; an
// operator (by group, or the admin token) sees everything.
func TestWhoSeesWhat(t *testing.T) {
	users := usersFileUsers(t, map[string][]string{"olga": {"engineering", "pbac-operators"}, "erin": {"engineering"}})
	ix, err := index.Open(t.Context(), "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ix.Close() })
	trail := audit.NewTrail(nil)
	t.Cleanup(func() { _ = trail.Close(context.Background()) })
	var reg *plugins.Registry
	erin := newDashWith(t, false, func(c *Config) { c.Users, c.Index, c.Audit, reg = users, ix, trail, c.Registry })
	setOperatorGroups(t, reg, "pbac-operators")
	h := erin.srv.Config.Handler.(*Handler)
	olga, admin := serveDash(t, h), serveDash(t, h)
	erin.signInAs("erin", filePassword)
	olga.signInAs("olga", filePassword)
	if status, out := admin.postSignIn(map[string]string{"admin_token": testAdminToken}); status != 200 {
		t.Fatalf("operator sign-in: %d %v", status, out)
	}
	subject := func(d *dash) string {
		t.Helper()
		_, out := d.do("GET", "/ui/api/session", nil)
		return out["user"].(map[string]any)["sub"].(string)
	}
	erinSub, olgaSub := subject(erin), subject(olga)

	now := time.Now()
	var recs []audit.Record
	for i, sub := range []string{erinSub, olgaSub, "", olgaSub, erinSub} {
		recs = append(recs, audit.Record{Time: now.Add(time.Duration(i) * time.Millisecond), RequestID: "r" + string(rune('0'+i)),
			ClientID: "agent-1", Subject: sub, Method: "tools/call", Tool: "drive_read", Decision: "allow", Status: 200})
	}
	if err := ix.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	querySubjects := func(d *dash, query string) (int, map[string]int) {
		t.Helper()
		status, out := d.do("GET", "/ui/api/audit"+query, nil)
		got := map[string]int{}
		if list, ok := out["records"].([]any); ok {
			for _, r := range list {
				sub, _ := r.(map[string]any)["sub"].(string)
				got[sub]++
			}
		}
		return status, got
	}
	for _, tc := range []struct {
		name   string
		d      *dash
		query  string
		status int
		want   map[string]int
	}{
		{"a person sees their own records", erin, "", 200, map[string]int{erinSub: 2}},
		{"a person asking for another's sees their own", erin, "?sub=" + olgaSub, 200, map[string]int{erinSub: 2}},
		{"an operator by group sees all", olga, "", 200, map[string]int{erinSub: 2, olgaSub: 2, "": 1}},
		{"an operator picks a person", olga, "?sub=" + erinSub, 200, map[string]int{erinSub: 2}},
		{"the admin token sees all", admin, "", 200, map[string]int{erinSub: 2, olgaSub: 2, "": 1}},
		{"records without a kind are decisions", admin, "?event=decision", 200, map[string]int{erinSub: 2, olgaSub: 2, "": 1}},
		{"a person's events of a kind are their own", erin, "?event=decision", 200, map[string]int{erinSub: 2}},
		{"no record of another kind", admin, "?event=token", 200, map[string]int{}},
		{"an unknown kind is refused", admin, "?event=tool_call", http.StatusBadRequest, map[string]int{}},
	} {
		t.Run("query/"+tc.name, func(t *testing.T) {
			status, got := querySubjects(tc.d, tc.query)
			if status != tc.status || len(got) != len(tc.want) {
				t.Fatalf("%d %v, want %d %v", status, got, tc.status, tc.want)
			}
			for sub, n := range tc.want {
				if got[sub] != n {
					t.Fatalf("%d %v, want %d %v", status, got, tc.status, tc.want)
				}
			}
		})
	}

	for _, tc := range []struct {
		name   string
		d      *dash
		path   string
		status int
	}{
		{"a person may not read the policy", erin, "/ui/api/policy", http.StatusForbidden},
		{"an operator by group reads the policy", olga, "/ui/api/policy", 200},
		{"the admin token reads the policy", admin, "/ui/api/policy", 200},
		{"a person sees the matrix of their agents", erin, "/ui/api/matrix?user=" + erinSub, 200},
		{"a person sees the matrix of agents acting as themselves", erin, "/ui/api/matrix", 200},
		{"a person may not see another's matrix", erin, "/ui/api/matrix?user=" + olgaSub, http.StatusForbidden},
		{"an operator sees another's matrix", olga, "/ui/api/matrix?user=" + erinSub, 200},
		{"a person lists the agents, to connect one", erin, "/ui/api/agents", http.StatusServiceUnavailable},
	} {
		t.Run("read/"+tc.name, func(t *testing.T) {
			if status, out := tc.d.do("GET", tc.path, nil); status != tc.status {
				t.Fatalf("%s: %d %v, want %d", tc.path, status, out, tc.status)
			}
		})
	}

	for _, tc := range []struct {
		name string
		d    *dash
		n    int
		want []string
	}{
		{"a person streams their own records", erin, 2, []string{erinSub, erinSub}},
		{"an operator by group streams all", olga, 4, []string{erinSub, olgaSub, "", erinSub}},
		{"the admin token streams all", admin, 4, []string{erinSub, olgaSub, "", erinSub}},
	} {
		t.Run("stream/"+tc.name, func(t *testing.T) {
			got := tc.d.streamSubjects(tc.n, func() {
				for _, sub := range []string{erinSub, olgaSub, "", erinSub} {
					trail.Record(audit.Record{Time: time.Now(), ClientID: "agent-1", Subject: sub, Method: "tools/call", Decision: "allow", Status: 200})
				}
			})
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("streamed the records of %q, want %q", got, tc.want)
			}
		})
	}
}
