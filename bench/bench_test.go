package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// funcConn is a Conn whose calls run a function.
type funcConn func(ctx context.Context) error

func (f funcConn) Call(ctx context.Context) error { return f(ctx) }
func (funcConn) Close() error                     { return nil }

func poolOf(t *testing.T, n int, call func(ctx context.Context) error) *Pool {
	t.Helper()
	p, err := OpenPool(t.Context(), TargetFunc(func(context.Context) (Conn, error) { return funcConn(call), nil }), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestOpenLoopSendsAtTheIntendedRate(t *testing.T) {
	var (
		mu    sync.Mutex
		sends []time.Time
	)
	p := poolOf(t, 2, func(context.Context) error {
		mu.Lock()
		sends = append(sends, time.Now())
		mu.Unlock()
		return nil
	})
	start := time.Now()
	res, err := p.RunOpen(t.Context(), OpenLoop{Rate: 400, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || res.Errors != 0 || res.Latency.TotalCount() != 200 {
		t.Fatalf("requests %d, errors %d, recorded %d; want 200 calls (400/s for 0.5 s), none failed",
			res.Requests, res.Errors, res.Latency.TotalCount())
	}
	if res.Elapsed < 490*time.Millisecond || res.Elapsed > 2*time.Second {
		t.Fatalf("the run took %s, want about 0.5 s", res.Elapsed)
	}
	// The calls are spread over the run, not sent in a burst: about half
	// of them in each half.
	firstHalf := 0
	for _, s := range sends {
		if s.Sub(start) < 250*time.Millisecond {
			firstHalf++
		}
	}
	if firstHalf < 70 || firstHalf > 130 {
		t.Fatalf("%d of 200 calls went in the first half of the run, want about 100", firstHalf)
	}
	if p90 := time.Duration(res.Latency.ValueAtQuantile(90)); p90 > 50*time.Millisecond {
		t.Fatalf("p90 %s for calls that return at once: the scheduler is late", p90)
	}
}

// stallingMCP is an MCP endpoint whose stallAt-th tools/call takes stall.
func stallingMCP(t *testing.T, stallAt int64, stall time.Duration, token string) *httptest.Server {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodDelete {
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"params"`
		}
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch msg.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
		case "notifications/initialized":
			w.WriteHeader(http.StatusAccepted)
			return
		case "tools/call":
			if r.Header.Get("Mcp-Session-Id") != "s1" || msg.Params.Name != "search_issues" || string(msg.Params.Arguments) != `{"query":"SEC"}` {
				http.Error(w, "bad call "+string(raw), http.StatusBadRequest)
				return
			}
			if calls.Add(1) == stallAt {
				time.Sleep(stall)
			}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `event: message`+"\n"+`data: {"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"content":[]}}`+"\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestOpenLoopChargesAStallToEveryCallItDelays is the coordinated
// omission check: one 200 ms stall at 500 calls/s on one connection delays
// about 100 calls by 0–200 ms. Measured from the intended send times that
// is a fifth of the calls, so p90 and p99 are high; measured from the
// actual sends (what a closed-loop tool reports) it is one slow call.
func TestOpenLoopChargesAStallToEveryCallItDelays(t *testing.T) {
	srv := stallingMCP(t, 100, 200*time.Millisecond, "tok")
	target := &MCPTarget{URL: srv.URL, Tool: "search_issues", Arguments: json.RawMessage(`{"query":"SEC"}`),
		Token: func(context.Context) (string, error) { return "tok", nil }}
	p, err := OpenPool(t.Context(), target, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := p.RunOpen(t.Context(), OpenLoop{Rate: 500, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 500 || res.Errors != 0 {
		t.Fatalf("requests %d, errors %d (%s); want 500, none failed", res.Requests, res.Errors, res.FirstError())
	}
	q := func(p float64) time.Duration { return time.Duration(res.Latency.ValueAtQuantile(p)) }
	if q(90) < 60*time.Millisecond || q(99) < 150*time.Millisecond || time.Duration(res.Latency.Max()) < 195*time.Millisecond {
		t.Fatalf("p90 %s, p99 %s, max %s: the stall was not charged to the calls it delayed (want p90 ≈ 100 ms, p99 ≈ 190 ms, max ≈ 200 ms)",
			q(90), q(99), time.Duration(res.Latency.Max()))
	}
	if svc := time.Duration(res.Service.ValueAtQuantile(90)); svc > 50*time.Millisecond {
		t.Fatalf("service time p90 %s: only one call was itself slow", svc)
	}
	if m := time.Duration(res.Service.Max()); m < 195*time.Millisecond {
		t.Fatalf("service time max %s, want the 200 ms stall", m)
	}
}

func TestOpenLoopIsBoundedWhenTheTargetHangs(t *testing.T) {
	p := poolOf(t, 2, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	start := time.Now()
	res, err := p.RunOpen(t.Context(), OpenLoop{Rate: 100, Duration: 200 * time.Millisecond, Drain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the run took %s; duration + drain is 0.4 s", took)
	}
	if res.Requests != 20 || res.Errors != 20 || res.Latency.TotalCount() != 0 {
		t.Fatalf("requests %d, errors %d, recorded %d; want 20 scheduled, all failed", res.Requests, res.Errors, res.Latency.TotalCount())
	}
	if !strings.Contains(describeErrors(res.ErrorKinds), "not sent") {
		t.Fatalf("errors %v: calls never sent must say so", res.ErrorKinds)
	}
}

func TestOpenLoopCapsAndValidation(t *testing.T) {
	p := poolOf(t, 1, func(context.Context) error { return nil })
	res, err := p.RunOpen(t.Context(), OpenLoop{Rate: 1000, Duration: time.Second, MaxRequests: 10})
	if err != nil || res.Requests != 10 {
		t.Fatalf("MaxRequests 10: %d requests, %v", res.Requests, err)
	}
	for _, cfg := range []OpenLoop{{Rate: 0, Duration: time.Second}, {Rate: MaxRate + 1, Duration: time.Second}, {Rate: 10}} {
		if _, err := p.RunOpen(t.Context(), cfg); err == nil {
			t.Errorf("%+v was accepted", cfg)
		}
	}
	if _, err := OpenPool(t.Context(), TargetFunc(func(context.Context) (Conn, error) { return funcConn(nil), nil }), 0); err == nil {
		t.Error("a pool of 0 connections was opened")
	}
}

func TestOpenLoopCountsFailures(t *testing.T) {
	var n atomic.Int64
	p := poolOf(t, 1, func(context.Context) error {
		if n.Add(1)%4 == 0 {
			return errors.New("HTTP 403: denied by policy")
		}
		return nil
	})
	res, err := p.RunOpen(t.Context(), OpenLoop{Rate: 1000, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Errors != 25 || res.ErrorKinds["HTTP 403: denied by policy"] != 25 || res.Latency.TotalCount() != 75 {
		t.Fatalf("requests %d errors %d kinds %v recorded %d", res.Requests, res.Errors, res.ErrorKinds, res.Latency.TotalCount())
	}
	if m := NewModeReport(ModeGateway, res, 0); !m.Failed() || m.Error != "HTTP 403: denied by policy" {
		t.Fatalf("25%% errors must fail the mode: %+v", m)
	}
}

func TestClosedLoopSaturates(t *testing.T) {
	p := poolOf(t, 2, func(context.Context) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	res, err := p.RunClosed(t.Context(), ClosedLoop{Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Two connections of ≤ 1000 calls/s each for 0.3 s.
	if res.Requests < 50 || res.Requests > 600 || res.Errors != 0 {
		t.Fatalf("%d requests, %d errors in 0.3 s on 2 connections of 1 ms calls", res.Requests, res.Errors)
	}
	if tp := res.Throughput(); tp < 150 || tp > 2100 {
		t.Fatalf("throughput %.0f/s", tp)
	}
	res, err = p.RunClosed(t.Context(), ClosedLoop{Duration: 10 * time.Second, MaxRequests: 25})
	if err != nil || res.Requests != 25 {
		t.Fatalf("MaxRequests 25: %d requests, %v", res.Requests, err)
	}
}

func TestPadArguments(t *testing.T) {
	got, err := PadArguments(json.RawMessage(`{"query": "SEC", "n": 3}`), 0)
	if err != nil || string(got) != `{"n":3,"query":"SEC"}` {
		t.Fatalf("unpadded: %s, %v", got, err)
	}
	got, err = PadArguments(json.RawMessage(`{"query":"SEC","n":3}`), 256)
	if err != nil || len(got) != 256 || !strings.HasPrefix(string(got), `{"n":3,"query":"SEC   `) {
		t.Fatalf("padded to 256: %d bytes %q, %v", len(got), got, err)
	}
	for _, c := range []struct {
		args string
		size int
	}{{`{"n":3}`, 100}, {`{"query":"SEC"}`, 5}, {`[1]`, 100}, {`nope`, 0}} {
		if _, err := PadArguments(json.RawMessage(c.args), c.size); err == nil {
			t.Errorf("PadArguments(%s, %d) succeeded", c.args, c.size)
		}
	}
}
