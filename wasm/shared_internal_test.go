package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/rego"
)

// TestHeldMembersStayUnchanged: the token's part an instance holds is read
// by every later evaluation on it, so no evaluation may change it: after
// every decision vector's rest evaluated with it held, each vector's whole
// input evaluated between, and rests that name a held member themselves
// (which opa_value_add_path replaces and frees), the held region of the
// instance's memory is byte for byte what it was.
func TestHeldMembersStayUnchanged(t *testing.T) {
	ctx := context.Background()
	b, err := rego.BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(ctx, NewConfig().WithMaxInstances(1))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	p, err := e.Load(ctx, b.Wasm, b.Data)
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rego.Vector
	if err := json.Unmarshal(must(rego.ShippedVectors()), &vectors); err != nil {
		t.Fatal(err)
	}
	split := func(input []byte) ([]Member, []byte, bool) {
		var members map[string]json.RawMessage
		if json.Unmarshal(input, &members) != nil || members == nil {
			return nil, nil, false
		}
		var shared []Member
		for _, name := range []string{"client", "subject", "token"} {
			if v, ok := members[name]; ok {
				shared = append(shared, Member{Name: name, Value: v})
				delete(members, name)
			}
		}
		rest, _ := json.Marshal(members)
		return shared, rest, len(shared) == 3
	}
	var held []Member
	for _, v := range vectors {
		if s, _, ok := split(v.Input); ok {
			held = s
			break
		}
	}
	if held == nil {
		t.Fatal("no vector has a client, a subject and a token")
	}
	for range 2 { // the second time in a row, it is parsed to be held
		if _, err := p.EvalShared(ctx, time.Time{}, "pbac/tool_call", held, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	in := p.idle[0]
	if in.shared == nil || in.heapBase <= in.dataEnd {
		t.Fatal("the instance holds no token's part")
	}
	region := func() []byte {
		b, _ := in.mem.Read(in.dataEnd, in.heapBase-in.dataEnd)
		return bytes.Clone(b)
	}
	before := region()
	evaluated := 0
	for _, v := range vectors {
		_, rest, ok := split(v.Input)
		if !ok {
			continue
		}
		rests := [][]byte{rest, bytes.Replace(rest, []byte(`{`), []byte(`{"token":{"client_id":"other","scp":[]},`), 1)}
		for _, r := range rests {
			if _, err := p.EvalShared(ctx, time.Time{}, v.Entrypoint, held, r); err != nil && !isUndefined(err) {
				t.Fatalf("%s: %v", v.Name, err)
			}
			evaluated++
		}
		if _, err := p.Eval(ctx, v.Entrypoint, v.Input); err != nil && !isUndefined(err) {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if p.idle[0] != in || in.shared == nil {
			t.Fatalf("%s: the instance was replaced or dropped what it held", v.Name)
		}
	}
	if evaluated < 200 {
		t.Fatalf("only %d evaluations with the part held", evaluated)
	}
	if !bytes.Equal(region(), before) {
		t.Fatal("an evaluation changed the token's part the instance holds")
	}
}

func isUndefined(err error) bool { return errors.Is(err, ErrUndefined) }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
