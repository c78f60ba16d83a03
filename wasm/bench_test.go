package wasm_test

import (
	"context"
	"testing"

	"github.com/pbac-gateway/pbac/wasm"
)

func BenchmarkEvalAllow(b *testing.B) {
	ctx := context.Background()
	e := newEngine(b, wasm.NewConfig())
	p := load(b, e, testModule(b), `{"items": [1, 2, 3]}`)
	input := []byte(`{"user":"alice","tool":"jira.search_issues","arguments":{"jql":"project = SEC"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Eval(ctx, "t/allow", input); err != nil {
			b.Fatal(err)
		}
	}
}
