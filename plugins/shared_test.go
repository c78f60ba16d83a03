package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// splitInput gives an input object's token's part (client, subject,
// token) apart from the rest, as the gateway gives a call's to
// DecideShared; ok is false when input is not an object.
func splitInput(t testing.TB, input []byte) (shared []contract.Member, rest []byte, ok bool) {
	t.Helper()
	var members map[string]json.RawMessage
	if err := json.Unmarshal(input, &members); err != nil || members == nil {
		return nil, nil, false
	}
	for _, name := range []string{"client", "subject", "token"} {
		if v, ok := members[name]; ok {
			shared = append(shared, contract.Member{Name: name, Value: v})
			delete(members, name)
		}
	}
	rest, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return shared, rest, true
}

// TestDecideSharedMatchesDecide: on the shipped policy's decision vectors,
// every entrypoint, DecideShared decides as Decide does on the whole
// input, twice over (the second time from the memo where the entrypoint is
// memoized, from the policy instance's parsed token's part elsewhere).
func TestDecideSharedMatchesDecide(t *testing.T) {
	ctx := context.Background()
	r := policytest.Registry(t)
	raw, err := rego.ShippedVectors()
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rego.Vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vectors {
		shared, rest, ok := splitInput(t, v.Input)
		if !ok || len(shared) == 0 {
			continue
		}
		n++
		ep := contract.Entrypoint(v.Entrypoint)
		want, wantErr := r.Decide(ctx, ep, v.Input)
		for range 2 {
			got, err := r.DecideShared(ctx, ep, shared, rest)
			if (err != nil) != (wantErr != nil) || got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) ||
				!bytes.Equal(got.Result, want.Result) || got.Version != want.Version || got.ContractVersion != want.ContractVersion {
				t.Fatalf("%s: DecideShared = %+v, %v; Decide = %+v, %v", v.Name, got, err, want, wantErr)
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d vectors had a token's part", n)
	}
}

// TestDecideSharedShadow: a shadow candidate is offered the whole input of
// a decision made in two parts, and compares it as any other.
func TestDecideSharedShadow(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	if _, err := r.Activate(ctx, policytest.Versioned(t, 1, "alice", "bob"), "active"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetShadow(ctx, policytest.Versioned(t, 2, "alice"), "candidate"); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "bob"} {
		name, _ := json.Marshal(user)
		d, err := r.DecideShared(ctx, "pbac/tool_call", []contract.Member{{Name: "user", Value: name}}, []byte(`{}`))
		if err != nil || !d.Allow {
			t.Fatalf("%s: %+v, %v", user, d, err)
		}
	}
	stats, ok := r.ClearShadow(ctx)
	if !ok || stats.Evaluated != 2 || stats.Disagreed != 1 || len(stats.Recent) != 1 {
		t.Fatalf("stats %+v", stats)
	}
	if in := string(stats.Recent[0].Input); in != `{"user":"bob"}` {
		t.Fatalf("the shadow was offered %s", in)
	}
	var _ contract.SharedDecider = (*plugins.Registry)(nil)
}
