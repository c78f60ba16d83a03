package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/latency"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// benchInput is a developer-tier agent acting for alice, writing a Jira
// issue: the common allowed path through every rule of pbac/tool_call.
const benchInput = `{
 "client": {"client_id": "c-alice-cc", "agent_provider": "claude-code", "agent_model": "claude-opus-4",
            "single_use_access_tokens": false, "verified": true},
 "subject": {"sub": "alice", "roles": ["engineering"]},
 "token": {"client_id": "c-alice-cc", "sub": "alice", "scp": ["drive:read", "drive:write", "jira:read", "jira:write", "slack:read"],
           "aud": ["http://127.0.0.1:8080/mcp"], "iat": 1700000000, "exp": 1700003600},
 "request": {"backend": "jira", "method": "tools/call", "tool": "jira.create_issue",
             "arguments": {"project": "SEC", "summary": "Rotate the staging keys", "description": "Found during the weekly review."}},
 "now": 1700000100
}`

// constrainedInput is a call under a role's argument constraint: carol, a
// contractor, may read Drive only under /public.
const constrainedInput = `{
 "client": {"client_id": "c-carol-cc", "agent_provider": "claude-code", "agent_model": "claude-opus-4",
            "single_use_access_tokens": false, "verified": true},
 "subject": {"sub": "carol", "roles": ["contractor"]},
 "token": {"client_id": "c-carol-cc", "sub": "carol", "scp": ["drive:read", "jira:read", "jira:write"],
           "aud": ["http://127.0.0.1:8080/mcp"], "iat": 1700000000, "exp": 1700003600},
 "request": {"backend": "drive", "method": "tools/call", "tool": "drive.read_file",
             "arguments": {"path": "/public/handbook.md"}},
 "now": 1700000100
}`

// BenchmarkToolCall compares one pbac/tool_call decision on the shipped
// policy: Wasm in wazero through the registry (what the gateway calls) and
// OPA's prepared topdown query (the reference evaluator). Both start from the
// raw input JSON and return the decision.
func BenchmarkToolCall(b *testing.B) {
	ctx := context.Background()
	input := []byte(benchInput)
	// sequential decides in a loop; before, if any, runs ahead of each
	// decision, outside the timed part.
	sequential := func(b *testing.B, before func(int)) {
		b.ReportAllocs()
		timedDecisions(b, policytest.Registry(b), contract.ToolCall, input, before, func(d plugins.Decision) bool { return d.Allow })
	}
	b.Run("engine=wasm", func(b *testing.B) { sequential(b, nil) })
	// A call a role's argument constraint applies to (role_constraint_ok).
	b.Run("engine=wasm/role-constraint", func(b *testing.B) {
		b.ReportAllocs()
		timedDecisions(b, policytest.Registry(b), contract.ToolCall, []byte(constrainedInput), nil, func(d plugins.Decision) bool { return d.Allow })
	})
	// cold: the caches evicted before each decision (latency.EvictCaches). The time
	// is the decision's alone.
	b.Run("engine=wasm/cold", func(b *testing.B) { sequential(b, latency.EvictCaches()) })
	b.Run("engine=wasm/parallel", func(b *testing.B) {
		r := policytest.Registry(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Decide(ctx, "pbac/tool_call", input); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	ref, err := rego.NewReference(ctx, rego.Sources(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("engine=topdown", func(b *testing.B) {
		b.ReportAllocs()
		samples := make([]time.Duration, 0, 1<<16)
		for b.Loop() {
			start := time.Now()
			_, err := ref.Decide(ctx, "pbac/tool_call", input)
			samples = append(samples, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
		}
		latency.Report(b, samples)
	})
	b.Run("engine=topdown/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ref.Decide(ctx, "pbac/tool_call", input); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkInputParse prints what carrying a call's input costs a decision
// by itself: pbac/anonymous on an empty input against the same with
// benchInput under a key no rule reads, so the difference is the input's
// validation, copy into the instance and parse by OPA's JSON parser alone
// (the cost a per-token principal kept in instance memory would save).
// The empty input's decision is the fixed cost of any decision; /cold
// evicts the caches before each (latency.EvictCaches):
// go test -run '^$' -bench InputParse -benchtime 10000x ./plugins/
func BenchmarkInputParse(b *testing.B) {
	for _, c := range []struct{ name, input string }{
		{"empty", `{}`},
		{"unread-call-input", `{"unread":` + benchInput + `}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			timedDecisions(b, policytest.Registry(b), contract.Anonymous, []byte(c.input), nil, nil)
		})
		b.Run(c.name+"/cold", func(b *testing.B) {
			timedDecisions(b, policytest.Registry(b), contract.Anonymous, []byte(c.input), latency.EvictCaches(), nil)
		})
	}
}

// timedDecisions decides input at entrypoint on r in a loop and reports
// the decisions' p50 and p99. before, if any, runs ahead of each decision
// outside the timed part: the p50 and p99 time the decision alone, while
// ns/op then counts before too. (Not b.StopTimer and b.StartTimer: they
// read the memory statistics, which empties every P's allocation cache,
// so each decision would begin by refilling it, which a gateway's
// decisions do not.) ok, if any, must hold for every decision.
func timedDecisions(b *testing.B, r *plugins.Registry, entrypoint contract.Entrypoint, input []byte, before func(i int), ok func(plugins.Decision) bool) {
	ctx := context.Background()
	samples := make([]time.Duration, 0, 1<<16)
	for i := 0; b.Loop(); i++ {
		if before != nil {
			before(i)
		}
		start := time.Now()
		d, err := r.Decide(ctx, entrypoint, input)
		samples = append(samples, time.Since(start))
		if err != nil || (ok != nil && !ok(d)) {
			b.Fatalf("%v %v", d, err)
		}
	}
	latency.Report(b, samples)
}

// BenchmarkSwap measures validate + activate of the shipped bundle (its
// decision vectors included) on a registry that already runs a version, and a
// data-only update that reuses the compiled module.
func BenchmarkSwap(b *testing.B) {
	ctx := context.Background()
	bundle, err := policytest.Shipped()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("activate", func(b *testing.B) {
		r := policytest.Registry(b)
		for b.Loop() {
			if _, err := r.Activate(ctx, bundle, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("set-data", func(b *testing.B) {
		r := policytest.Registry(b)
		for b.Loop() {
			if _, err := r.SetData(ctx, bundle.Data, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkColdStart measures a restart: a new engine loads the shipped
// module and makes its first decision, with the compiled code read from the
// on-disk compilation cache, and without one (a full compile).
func BenchmarkColdStart(b *testing.B) {
	ctx := context.Background()
	bundle, err := policytest.Shipped()
	if err != nil {
		b.Fatal(err)
	}
	input := []byte(benchInput)
	start := func(b *testing.B, cfg wasm.Config) {
		e, err := wasm.NewEngine(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		p, err := e.Load(ctx, bundle.Wasm, bundle.Data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Eval(ctx, "pbac/tool_call", input); err != nil {
			b.Fatal(err)
		}
		_ = p.Close(ctx)
		_ = e.Close(ctx)
	}
	b.Run("cache=disk", func(b *testing.B) {
		cfg := wasm.NewConfig().WithCacheDir(b.TempDir())
		start(b, cfg) // populate the cache
		for b.Loop() {
			start(b, cfg)
		}
	})
	b.Run("cache=none", func(b *testing.B) {
		for b.Loop() {
			start(b, wasm.NewConfig())
		}
	})
}

// listOfResources is a pbac/list input naming n resources under the
// shipped jira://issue/ prefix, for the caller of benchInput.
func listOfResources(b testing.TB, n int) []byte {
	var in map[string]any
	if err := json.Unmarshal([]byte(benchInput), &in); err != nil {
		b.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("jira.resource:jira://issue/SEC-%d", i)
	}
	in["request"] = map[string]any{"backend": "jira", "method": "resources/list", "tools": names}
	raw, err := json.Marshal(in)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkListResources decides pbac/list for a resources/list of 100
// and of 2,000 URIs under a prefix entry: each name is looked up by its
// own prefixes, not against every catalogue entry.
func BenchmarkListResources(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := policytest.Registry(b)
			input := listOfResources(b, n)
			samples := make([]time.Duration, 0, 1024)
			for b.Loop() {
				start := time.Now()
				d, err := r.Decide(ctx, contract.List, input)
				samples = append(samples, time.Since(start))
				if err != nil || !d.Allow {
					b.Fatalf("%v %v", d, err)
				}
			}
			latency.Report(b, samples)
		})
	}
}
