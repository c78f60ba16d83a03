package plugins_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/wasm"
)

// runawayRegistry is a registry with the Runaway policy active, on an
// engine configured by cfg.
func runawayRegistry(t *testing.T, cfg wasm.Config, opts ...plugins.Option) *plugins.Registry {
	t.Helper()
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := plugins.New(e, opts...)
	t.Cleanup(func() {
		_ = r.Close(ctx)
		_ = e.Close(ctx)
	})
	if _, err := r.Activate(ctx, policytest.Runaway(t), "runaway"); err != nil {
		t.Fatal(err)
	}
	return r
}

var runawayCall = []byte(`{"request":{"backend":"drive","method":"tools/call","tool":"` + policytest.RunawayTool + `","arguments":{"runaway":true}}}`)

// Every decision ends within the decision timeout, the wait for a policy
// instance included, whatever its caller's context allows; one that ran out
// of it says so (ErrDecisionTimeout), one stopped by another deadline does
// not. Afterwards the registry decides as before.
func TestDecisionTimeoutBoundsEveryDecision(t *testing.T) {
	long := time.Minute
	tests := []struct {
		name         string
		evalTimeout  time.Duration
		decision     time.Duration
		callerLimit  time.Duration // 0: a context without deadline
		concurrent   int
		wantDecision bool // ErrDecisionTimeout
	}{
		{name: "the decision timeout stops a runaway evaluation", evalTimeout: long, decision: time.Second, concurrent: 1, wantDecision: true},
		{name: "a decision queued behind a runaway one is bounded too", evalTimeout: long, decision: time.Second, concurrent: 3, wantDecision: true},
		{name: "the evaluation deadline comes first", evalTimeout: 100 * time.Millisecond, decision: long, concurrent: 1},
		{name: "the caller's earlier deadline comes first", evalTimeout: long, decision: long, callerLimit: 200 * time.Millisecond, concurrent: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runawayRegistry(t, wasm.NewConfig().WithMaxInstances(1).WithEvalTimeout(tc.evalTimeout),
				plugins.WithDecisionTimeout(tc.decision))
			var wg sync.WaitGroup
			errs := make(chan error, tc.concurrent)
			for range tc.concurrent {
				wg.Go(func() {
					ctx := context.Background()
					if tc.callerLimit > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, tc.callerLimit)
						defer cancel()
					}
					_, err := r.Decide(ctx, "pbac/tool_call", runawayCall)
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err == nil {
					t.Fatal("a runaway decision was made")
				}
				if got := errors.Is(err, plugins.ErrDecisionTimeout); got != tc.wantDecision {
					t.Fatalf("err = %v; ErrDecisionTimeout %v, want %v", err, got, tc.wantDecision)
				}
			}
			d, err := r.Decide(context.Background(), "pbac/tool_call", []byte(`{}`))
			if err != nil || d.Allow {
				t.Fatalf("the next decision: %+v, %v; want a deny", d, err)
			}
		})
	}
}
