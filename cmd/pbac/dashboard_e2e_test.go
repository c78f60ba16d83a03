package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var dashboardLine = regexp.MustCompile(`dashboard\s+(http://127\.0\.0\.1:\d+)/ui/`)

// dashboardClient signs in to the real binary's dashboard.
type dashboardClient struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string
}

func signInDashboard(t *testing.T, out, user string) *dashboardClient {
	t.Helper()
	return signInDashboardAs(t, out, user, "demo")
}

// signInDashboardAs signs user in at the dashboard of the pbac up whose
// output is out.
func signInDashboardAs(t *testing.T, out, user, password string) *dashboardClient {
	t.Helper()
	m := dashboardLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dashboard in the output:\n%s", out)
	}
	jar, _ := cookiejar.New(nil)
	d := &dashboardClient{t: t, base: m[1], http: &http.Client{Jar: jar, Timeout: 2 * time.Minute}}
	d.loadSignInForm()
	status, body := d.do("POST", "/ui/api/session", map[string]string{"username": user, "password": password})
	if status != 200 {
		t.Fatalf("sign in: %d %s", status, body)
	}
	var s struct{ CSRF string }
	_ = json.Unmarshal(body, &s)
	d.csrf = s.CSRF
	return d
}

// loadSignInForm gets a sign-in form token: the next request carries it.
func (d *dashboardClient) loadSignInForm() {
	d.t.Helper()
	status, body := d.do("GET", "/ui/api/session/form", nil)
	var f struct{ CSRF string }
	if err := json.Unmarshal(body, &f); status != 200 || err != nil || f.CSRF == "" {
		d.t.Fatalf("sign-in form: %d %s", status, body)
	}
	d.csrf = f.CSRF
}

func (d *dashboardClient) do(method, path string, body any) (int, []byte) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, d.base+path, r)
	req.Header.Set("X-PBAC-CSRF", d.csrf)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type runEvent struct {
	Type, Kind, Tool, Reason, Summary, Error, RequestID, Decision string
	ApprovalID                                                    string `json:"approval_id"`
	Status                                                        int
	Restored                                                      string `json:"restored_policy_version"`
}

// run runs a scenario and returns its events.
func (d *dashboardClient) run(id string, body map[string]any) []runEvent {
	d.t.Helper()
	status, raw := d.do("POST", "/ui/api/scenarios/"+id+"/run", body)
	if status != 200 {
		d.t.Fatalf("run %s: %d %s", id, status, raw)
	}
	var evs []runEvent
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var e runEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			d.t.Fatalf("run %s: a line is not JSON: %s", id, sc.Text())
		}
		e.RequestID = gjson(sc.Bytes(), "request_id")
		evs = append(evs, e)
	}
	return evs
}

func gjson(b []byte, key string) string {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	s, _ := m[key].(string)
	return s
}

// statuses are the HTTP statuses of a run's calls; a policy step is "P".
func statuses(evs []runEvent) []string {
	var out []string
	for _, e := range evs {
		if e.Type != "step" {
			continue
		}
		if e.Kind == "policy" {
			out = append(out, "P")
			continue
		}
		if e.Kind == "approve" {
			out = append(out, "approve: "+e.Decision)
			continue
		}
		out = append(out, outcome(e))
	}
	return out
}

// held is what outcome says of a call policy holds until a person
// approves it.
const held = "held"

// deniedAsResult is what outcome says of a call policy denied and the
// gateway answered, as it does by default (denials: tool_error), with a
// 200 tool result carrying the denial.
const deniedAsResult = "denied (tool result)"

// outcome is a call step's HTTP status text, or deniedAsResult for a
// denial answered 200: a step must never read as allowed ("OK") when
// policy denied it.
func outcome(e runEvent) string {
	if e.Decision == "deny" && e.Status == http.StatusOK {
		return deniedAsResult
	}
	if e.Decision == "hold" {
		return held
	}
	return http.StatusText(e.Status)
}

// TestDashboardScenarios runs every narrative scenario of the demo tenant
// through the real binary's dashboard, as the seeded agents over real
// HTTP, and checks what the shipped policy decides at each step, that each
// call is in the audit trail, and that the latency panel has figures.
func TestDashboardScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	_, out := startUp(t, t.TempDir())
	d := signInDashboard(t, out.String(), "alice")

	const ok, no, unauth, refused = "OK", deniedAsResult, "Unauthorized", "Bad Request"
	want := map[string][]string{
		"live-test": {ok, no},
		// The traversal is not a canonical path: refused before policy
		// (issue 14, High #2).
		"prod-secrets": {ok, no, refused, no},
		// The approval is refused (separation of duties); the deploy
		// waits for release.
		"ci-self-approval": {ok, ok, no, held},
		// Bob (release) approves; the retry deploys.
		"deploy-approval":  {ok, held, "approve: allow", ok},
		"scanner-token":    {ok, unauth},
		"planner-new-tool": {ok, ok, no},
		"broad-scope":      {ok, "P", no},
		// The DDL waits for a DBA, and alice, one, may not approve her
		// own agent's.
		"alice-day": {ok, ok, ok, ok, held, "approve: deny"},
		"bob-day":   {ok, ok, no, no},
		"carol-day": {ok, ok, no, no},
	}
	// The calls that wait for a person's approval, and the reason they
	// say so (the planner's deploy is allowed).
	waits := map[string]string{
		"jenkins.trigger_deploy": "approval required: deploys need someone from release",
		"database.execute_ddl":   "approval required: schema changes need a DBA",
	}
	status, raw := d.do("GET", "/ui/api/scenarios", nil)
	var list struct{ Scenarios []struct{ ID string } }
	if err := json.Unmarshal(raw, &list); status != 200 || err != nil || len(list.Scenarios) != len(want) {
		t.Fatalf("scenarios: %d %s", status, raw)
	}
	var denied []string
	waited := 0
	for _, sc := range list.Scenarios {
		t.Run(sc.ID, func(t *testing.T) {
			evs := d.run(sc.ID, map[string]any{})
			if got := statuses(evs); !slices.Equal(got, want[sc.ID]) {
				t.Fatalf("statuses %v, want %v\n%+v", got, want[sc.ID], evs)
			}
			if evs[0].Type != "token" || evs[len(evs)-1].Type != "done" {
				t.Fatalf("a run starts with the token and ends with done: %+v", evs)
			}
			for _, e := range evs {
				if e.Type == "step" && e.Kind != "approve" && outcome(e) == held {
					waited++
					if waits[e.Tool] == "" || !strings.Contains(e.Reason, waits[e.Tool]) || e.ApprovalID == "" {
						t.Errorf("%s held: reason %q, approval %q; want %q", e.Tool, e.Reason, e.ApprovalID, waits[e.Tool])
					}
				}
				if e.Type == "step" && e.Kind == "approve" && e.Decision == "deny" && !strings.Contains(e.Reason, "requester may not approve") {
					t.Errorf("alice's refused approval says %q, want the separation of duties", e.Reason)
				}
				if e.Type == "step" && outcome(e) == no {
					if e.Reason == "" || e.RequestID == "" {
						t.Errorf("a denial without reason or request id: %+v", e)
					}
					denied = append(denied, e.RequestID)
				}
			}
			if sc.ID == "broad-scope" && evs[len(evs)-1].Restored == "" {
				t.Errorf("the scenario's policy change was not undone: %+v", evs[len(evs)-1])
			}
		})
	}

	if waited != 3 { // ci-self-approval's and deploy-approval's deploys, alice-day's DDL
		t.Errorf("%d calls waited for an approval, want 3", waited)
	}

	t.Run("every denial is in the audit trail", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, raw := d.do("GET", "/ui/api/audit?event=decision&decision=deny&limit=200", nil)
			var recs struct {
				Records []struct {
					RequestID string   `json:"request_id"`
					Reasons   []string `json:"reasons"`
				}
			}
			_ = json.Unmarshal(raw, &recs)
			seen := map[string]bool{}
			for _, r := range recs.Records {
				seen[r.RequestID] = len(r.Reasons) > 0
			}
			missing := slices.DeleteFunc(slices.Clone(denied), func(id string) bool { return seen[id] })
			if len(missing) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d denials are not audited with a reason: %v", len(missing), missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("the latency panel has figures", func(t *testing.T) {
		_, raw := d.do("GET", "/ui/api/latency", nil)
		var rep struct {
			Stages []struct {
				Stage string
				Count int
				P50   int64 `json:"p50_us"`
				P99   int64 `json:"p99_us"`
			}
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatal(err)
		}
		for _, s := range rep.Stages {
			if s.Count == 0 || s.P50 <= 0 || s.P99 < s.P50 {
				t.Errorf("stage %+v", s)
			}
		}
	})

	t.Run("an agent registered from the dashboard runs the live test", func(t *testing.T) {
		status, raw := d.do("POST", "/ui/api/agents", map[string]any{"client_name": "release bot", "provider": "ci-bot",
			"model": "m1", "kind": "machine"})
		var a struct {
			ClientID string `json:"client_id"`
			Tier     string `json:"tier"`
			Secret   string `json:"client_secret"`
		}
		if err := json.Unmarshal(raw, &a); status != 201 || err != nil || a.Tier != "ci_agent" || a.Secret == "" {
			t.Fatalf("register: %d %s", status, raw)
		}
		if got := statuses(d.run("live-test", map[string]any{"agent": a.ClientID})); !slices.Equal(got, []string{ok, no}) {
			t.Fatalf("live test as the new agent: %v", got)
		}
		if status, _ := d.do("DELETE", "/ui/api/agents/"+a.ClientID, nil); status != 204 {
			t.Fatalf("revoke: %d", status)
		}
		if status, raw := d.do("POST", "/ui/api/scenarios/live-test/run", map[string]any{"agent": a.ClientID}); status != 400 {
			t.Fatalf("run as a revoked agent: %d %s", status, raw)
		}
	})

	t.Run("an agent of no tier gets no token", func(t *testing.T) {
		status, raw := d.do("POST", "/ui/api/agents", map[string]any{"client_name": "stranger", "provider": "unknown-vendor", "kind": "human"})
		var a struct {
			ClientID string `json:"client_id"`
			Tier     string `json:"tier"`
		}
		if err := json.Unmarshal(raw, &a); status != 201 || err != nil || a.Tier != "unverified" {
			t.Fatalf("register: %d %s", status, raw)
		}
		evs := d.run("live-test", map[string]any{"agent": a.ClientID, "user": "alice"})
		if len(evs) != 1 || evs[0].Type != "error" || !strings.Contains(evs[0].Error, "refused") {
			t.Fatalf("run: %+v", evs)
		}
	})

	t.Run("bad run requests", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			body   any
			status int
		}{
			{"/ui/api/scenarios/nope/run", map[string]any{}, 404},
			{"/ui/api/scenarios/live-test/run", map[string]any{"agent": "nobody"}, 400},
			{"/ui/api/scenarios/live-test/run", map[string]any{"user": "mallory"}, 400},
			{"/ui/api/scenarios/live-test/run", map[string]any{"pace_ms": 60000}, 400},
			{"/ui/api/scenarios/live-test/run", map[string]any{"extra": 1}, 400},
			{"/ui/api/agents", map[string]any{"client_name": "<script>", "provider": "ci-bot", "kind": "machine"}, 400},
			{"/ui/api/agents", map[string]any{"client_name": "x", "provider": "ci-bot", "kind": "robot"}, 400},
		} {
			if status, raw := d.do("POST", tc.path, tc.body); status != tc.status {
				t.Errorf("POST %s %v: %d %s, want %d", tc.path, tc.body, status, raw, tc.status)
			}
		}
	})
}
