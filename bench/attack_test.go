package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/canon"
)

// Every shape is one string argument of about the asked size that a path
// fast path cannot take: many segments and a separator, "." or "%" trick.
func TestAttackShapesArePathologicalPathsOfTheAskedSize(t *testing.T) {
	shapes, err := AttackShapes("path", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(shapes) < 4 {
		t.Fatalf("%d shapes, want several", len(shapes))
	}
	for _, s := range shapes {
		var args map[string]string
		if err := json.Unmarshal(s.Arguments, &args); err != nil || len(args) != 1 {
			t.Fatalf("%s: arguments %s are not one string argument: %v", s.Name, s.Arguments, err)
		}
		v := args["path"]
		if len(v) < 2048-8 || len(v) > 2048 {
			t.Errorf("%s: %d bytes, want about 2048", s.Name, len(v))
		}
		if strings.Count(v, "/")+strings.Count(v, `\`)+strings.Count(v, "%2f") < 300 {
			t.Errorf("%s: too few segments to be expensive: %.40s…", s.Name, v)
		}
	}
	if v := mustArg(t, shapes[0]); !strings.HasPrefix(v, "/a/a/a") || !strings.HasSuffix(v, "/%") {
		t.Errorf(`the first shape is the issue's "/a"×n + "/%%": %.20s…%s`, v, v[len(v)-4:])
	}
	for _, c := range []struct {
		arg  string
		size int
	}{{"", 2048}, {"path", 4}, {"path", MaxAttackBytes + 1}} {
		if _, err := AttackShapes(c.arg, c.size); err == nil {
			t.Errorf("AttackShapes(%q, %d) accepted", c.arg, c.size)
		}
	}
}

// TestCanonicalAttackShapeIsCanonicalAndAdmitted: the shape that reaches
// policy is a canonical path of the asked size and segment count, within
// the gateway's default path limits at 1 KiB.
func TestCanonicalAttackShapeIsCanonicalAndAdmitted(t *testing.T) {
	s, err := CanonicalAttackShape("path", 1024, 64)
	if err != nil {
		t.Fatal(err)
	}
	v := mustArg(t, s)
	if len(v) > 1024 || len(v) < 1024-64 {
		t.Errorf("%d bytes, want about 1024", len(v))
	}
	if n := strings.Count(v, "/"); n != 64 {
		t.Errorf("%d segments, want 64", n)
	}
	if err := canon.Check(canon.KindPath, v); err != nil {
		t.Errorf("not canonical: %v: %.40s…", err, v)
	}
	for _, c := range []struct {
		arg            string
		size, segments int
	}{{"", 1024, 64}, {"path", 100, 64}, {"path", 1024, 0}, {"path", MaxAttackBytes + 1, 64}} {
		if _, err := CanonicalAttackShape(c.arg, c.size, c.segments); err == nil {
			t.Errorf("CanonicalAttackShape(%q, %d, %d) accepted", c.arg, c.size, c.segments)
		}
	}
}

func mustArg(t *testing.T, s AttackShape) string {
	t.Helper()
	var args map[string]string
	if err := json.Unmarshal(s.Arguments, &args); err != nil {
		t.Fatal(err)
	}
	return args["path"]
}

func TestOutcomeNamesWhatACallGot(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("%w: {\"result\":{\"isError\":true}}", ErrTool), "tool error"},
		{&StatusError{Code: 403, Body: []byte(`{"jsonrpc":"2.0","id":17,"error":{"code":-32003,"message":"denied: the policy could not decide"}}`)},
			"HTTP 403: denied: the policy could not decide"},
		{&StatusError{Code: 503, Body: []byte(`{"error":"temporarily_unavailable","error_description":"try again"}`)},
			"HTTP 503: temporarily_unavailable (try again)"},
		{&StatusError{Code: 502, Body: []byte(`bad gateway`)}, "HTTP 502"},
		{fmt.Errorf("post: %w", context.DeadlineExceeded), "timed out"},
		{errors.New(strings.Repeat("x", 200)), "failed: " + strings.Repeat("x", 80) + "…"},
	} {
		if got := Outcome(c.err); got != c.want {
			t.Errorf("Outcome(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// The attack runs until its context ends, counts every answered call by
// outcome with its latency, and leaves out the calls the end cut off.
func TestRunAttackCountsOutcomesUntilStopped(t *testing.T) {
	var n atomic.Int64
	p := poolOf(t, 3, func(ctx context.Context) error {
		i := n.Add(1)
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if i%2 == 0 {
			return &StatusError{Code: 403, Body: []byte(`{"error":{"message":"denied"}}`)}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	res, err := p.RunAttack(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 10 {
		t.Fatalf("%d calls in 200 ms on 3 connections", res.Requests)
	}
	if got := res.Outcomes["ok"] + res.Outcomes["HTTP 403: denied"]; got != res.Requests || res.Outcomes["ok"] == 0 || res.Outcomes["HTTP 403: denied"] == 0 {
		t.Fatalf("outcomes %v for %d calls", res.Outcomes, res.Requests)
	}
	if res.Latency.TotalCount() != res.Requests {
		t.Fatalf("%d latencies for %d calls", res.Latency.TotalCount(), res.Requests)
	}
	// The limit ends it too.
	res, err = p.RunAttack(t.Context(), 50*time.Millisecond)
	if err != nil || res.Requests == 0 {
		t.Fatalf("an attack limited to 50 ms: %v, %+v", err, res)
	}
}

func TestTokenTargetAsksForClientCredentials(t *testing.T) {
	var bad atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != "c1" || secret != "s3cret" ||
			r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "jira:read" ||
			r.PostForm.Get("resource") != "http://gw/mcp/jira" || bad.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"t","token_type":"bearer"}`))
	}))
	defer srv.Close()
	tt := &TokenTarget{URL: srv.URL, ClientID: "c1", Secret: "s3cret", Scope: "jira:read", Resource: "http://gw/mcp/jira"}
	c, err := tt.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(t.Context()); err != nil {
		t.Fatal(err)
	}
	bad.Store(true)
	err = c.Call(t.Context())
	if got := Outcome(err); got != "HTTP 401: invalid_client" {
		t.Fatalf("a refused token request: %v (%q)", err, got)
	}
}

// A row measured under attack is compared with its baseline, and the
// attackers' outcomes are listed.
func TestReportComparesTheAttackWithTheBaseline(t *testing.T) {
	shapes, _ := AttackShapes("path", 64)
	under := NewModeReport(ModeGateway+UnderAttack, result(1000, 1200, 100, 9000, 0), 0)
	atk := &AttackResult{Requests: 30, Outcomes: map[string]int64{"HTTP 403: denied: the policy could not decide": 28, "tool error": 2}, Latency: newHistogram()}
	_ = atk.Latency.RecordValue(100_000_000)
	under.Attack = NewAttackFigures(6, "drive.read_file", shapes, 64, atk)
	rep := &Report{Scenario: Scenario{Loop: LoopOpen, Rate: 50, Concurrency: 8, Attackers: 6, AttackTool: "drive.read_file"}, Modes: []ModeReport{
		NewModeReport(ModeGateway, result(1000, 600, 100, 4000, 0), 0),
		NewModeReport(ModeGateway+TokenRow, result(1000, 700, 100, 4000, 0), 0),
		under,
	}}
	rep.Compute()
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"gateway under attack: p50 649 → 1249 µs (×1.9), p99 698 → 1298 µs (×1.9)",
		"gateway+attack: 6 attackers called drive.read_file with 64-byte pathological arguments",
		"30 calls, p50 100008 µs",
		"28× HTTP 403: denied: the policy could not decide; 2× tool error",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table does not say %q:\n%s", want, b.String())
		}
	}
	if rep.Modes[1].AddedP50 != nil {
		t.Error("a token endpoint row has an added latency over a direct tool call")
	}
}
