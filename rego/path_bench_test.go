package rego_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// pathologicalCall is drive.read_file with the path of issue 14's High #1:
// "/a" repeated segments times, then "/%" (the "%" sends the path off the
// plain fast path, into segment handling).
func pathologicalCall(segments int) []byte {
	in := map[string]any{
		"client": map[string]any{"client_id": "c1", "agent_provider": "claude-code", "verified": true},
		"token": map[string]any{"client_id": "c1", "scp": []string{"drive:read"}, "aud": []string{"https://gw.example/mcp"},
			"iat": 1700000000, "exp": 1700000300},
		"request": map[string]any{"backend": "drive", "method": "tools/call", "tool": "drive.read_file",
			"arguments": map[string]any{"path": strings.Repeat("/a", segments) + "/%"}},
		"now": 1700000100,
	}
	b, _ := json.Marshal(in)
	return b
}

// BenchmarkPathologicalPath evaluates pbac/tool_call on the pathological
// path at 100, 1,000 and 10,000 segments, in Wasm (what the gateway runs,
// with a generous deadline so that a slow policy shows its real cost) and
// in OPA's topdown evaluator. Linear path handling shows as ns/op growing
// about tenfold per row; the quadratic one it replaced grew a hundredfold.
func BenchmarkPathologicalPath(b *testing.B) {
	ctx := context.Background()
	bundle, err := rego.BuildShipped(ctx)
	if err != nil {
		b.Fatal(err)
	}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(time.Minute).WithMaxInputBytes(16<<20))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = engine.Close(ctx) })
	p, err := engine.Load(ctx, bundle.Wasm, bundle.Data)
	if err != nil {
		b.Fatal(err)
	}
	ref, err := rego.NewReferenceFromBundle(ctx, bundle)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 1000, 10000} {
		input := pathologicalCall(n)
		for _, ev := range []struct {
			name   string
			decide func(context.Context, string, []byte) ([]byte, error)
		}{{"wasm", p.Eval}, {"topdown", ref.Decide}} {
			b.Run(fmt.Sprintf("engine=%s/segments=%d", ev.name, n), func(b *testing.B) {
				for b.Loop() {
					out, err := ev.decide(ctx, "pbac/tool_call", input)
					if err != nil {
						b.Fatal(err)
					}
					if !strings.Contains(string(out), `"allow":`) {
						b.Fatalf("no decision: %s", out)
					}
				}
			})
		}
	}
}

// BenchmarkToolCallPath is one drive.read_file decision in Wasm on an
// ordinary path, a non-ASCII one (the full refused class is matched once)
// and a look-alike bypass (denied), to compare with
// BenchmarkPathologicalPath.
func BenchmarkToolCallPath(b *testing.B) {
	ctx := context.Background()
	bundle, err := rego.BuildShipped(ctx)
	if err != nil {
		b.Fatal(err)
	}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = engine.Close(ctx) })
	p, err := engine.Load(ctx, bundle.Wasm, bundle.Data)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, path, want string }{
		{"ascii", "/team/roadmap.md", `"allow":true`},
		{"non-ascii", "/team/caf\u00e9.md", `"allow":true`},
		{"fullwidth-solidus", "/prod\uff0fsecrets/db.env", `"allow":false`},
		// The costliest path the gateway's default argument limits admit:
		// 1 KiB in 63 segments (what pbac bench --attack-canonical sends).
		{"canonical-1KiB-63-segments", canonicalLongPath(1024, 63), `"allow":true`},
		{"non-ascii-1KiB-63-segments", strings.ReplaceAll(canonicalLongPath(1024, 63), "aa", "\u00e9"), `"allow":true`},
	} {
		input := []byte(strings.Replace(string(pathologicalCall(3)), "/a/a/a/%", c.path, 1))
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				out, err := p.Eval(ctx, "pbac/tool_call", input)
				if err != nil || !strings.Contains(string(out), c.want) {
					b.Fatalf("%s %v", out, err)
				}
			}
		})
	}
}

// canonicalLongPath is a canonical path of about size bytes in segments
// segments.
func canonicalLongPath(size, segments int) string {
	var b strings.Builder
	for i := range segments {
		name := fmt.Sprintf("/s%d", i)
		b.WriteString(name + strings.Repeat("a", max(0, size/segments-len(name))))
	}
	return b.String()
}
