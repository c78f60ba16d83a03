package contract_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/latency"
	"github.com/pbac-gateway/pbac/wasm"
)

// inputs are policy inputs of every shape the gateway and the
// authorization server send, each member set and unset.
func inputs() map[string]*contract.Input {
	full := &contract.Input{
		Client: &contract.Client{ClientID: "c-alice-cc", AgentProvider: "claude-code", AgentModel: "claude-opus-4",
			SingleUseAccessTokens: true, SoftwareID: "sw-1", Verified: true,
			Attestation: &contract.Attestation{Kind: contract.AttestationOperator, By: "ops", Provider: "claude-code", Origin: "https://x", Machine: true}},
		Subject: &contract.Subject{Sub: "alice", Roles: []string{"engineering"}, Groups: []string{"eng", "staff"}},
		Token: &contract.TokenClaims{ClientID: "c-alice-cc", Sub: "alice", Scp: []string{"jira:read", "jira:write"},
			Aud: []string{"http://127.0.0.1:8080/mcp"}, Iat: 1700000000, Exp: -1,
			Act: &contract.Actor{Sub: "c-parent", Act: &contract.Actor{Sub: "c-grandparent"}}},
		Request: contract.Request{Backend: "jira", Method: "tools/call", Tool: "jira.search_issues",
			Arguments:          json.RawMessage(" {\"query\" : \"a <b> & c\u2028\", \"n\": [1, 2.5e3, true, null]}\n"),
			ResourceAttributes: map[string]any{"author": "bob", "labels": []any{"x", 1.5}},
			Tools:              []string{"jira.search_issues"},
			ToolDefinition:     &contract.ToolDefinition{Hash: "sha256:00", Pinned: true},
			ToolDefinitions:    map[string]contract.ToolDefinition{"b": {Hash: "h"}, "a": {Matches: true}},
			GrantType:          "authorization_code", Scopes: []string{"jira:read"}, Resource: []string{"http://r"},
			Actor:          &contract.Client{ClientID: "c-actor"},
			AudienceClient: &contract.Client{ClientID: "c-audience", Attestation: &contract.Attestation{Kind: contract.AttestationCIMD}}},
		Now: 1700000100,
		Approval: &contract.GrantedApproval{ID: "ap-1", Rule: "prod-writes", Granted: true,
			Approver: contract.ApprovalPerson{Sub: "carol"}, Via: "dashboard", GrantedAt: 1700000050},
	}
	return map[string]*contract.Input{
		"empty": {},
		"full":  full,
		"introspect": {
			Client:  &contract.Client{ClientID: "c-bot", Verified: false},
			Token:   &contract.TokenClaims{ClientID: "c-bot", Scp: []string{}, Aud: nil, Iat: 1, Exp: 2},
			Request: contract.Request{Resource: []string{"http://127.0.0.1:8080/mcp"}},
		},
		"empty collections": {
			Subject: &contract.Subject{Sub: "", Roles: []string{}, Groups: []string{}},
			Request: contract.Request{Arguments: json.RawMessage(`{}`), ResourceAttributes: map[string]any{},
				Tools: []string{}, ToolDefinitions: map[string]contract.ToolDefinition{}, Scopes: []string{}},
		},
		"null arguments": {Request: contract.Request{Method: "tools/call", Arguments: json.RawMessage(`null`)}},
		"strings to escape": {
			Subject: &contract.Subject{Sub: "a\"b\\c\b\f\n\r\t\x00\x1f\x7f<>&\u2028\u2029é😀\xff\xc3(", Roles: []string{"\u2029", "\xed\xa0\x80"}},
		},
	}
}

// TestMarshalInputMatchesEncodingJSON: MarshalInput writes what
// encoding/json writes, byte for byte, for every shape of input.
func TestMarshalInputMatchesEncodingJSON(t *testing.T) {
	for name, in := range inputs() {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := contract.MarshalInput(in)
			if err != nil {
				t.Fatalf("MarshalInput: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("MarshalInput:\n%s\nencoding/json:\n%s", got, want)
			}
		})
	}
}

// TestMarshalInputWritesEveryField sets every field of an Input and of
// every type in it, by reflection, and compares with encoding/json: a
// field added to the contract later and not to MarshalInput fails here
// instead of being left out of what policy decides on. Pointers are also
// set to zero values, so each omitempty rule is met both ways.
func TestMarshalInputWritesEveryField(t *testing.T) {
	for _, zero := range []bool{false, true} {
		var in contract.Input
		fill(reflect.ValueOf(&in).Elem(), zero, 0)
		want, err := json.Marshal(&in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := contract.MarshalInput(&in)
		if err != nil {
			t.Fatalf("MarshalInput: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("zero %v: MarshalInput:\n%s\nencoding/json:\n%s", zero, got, want)
		}
	}
}

// fill sets v: with zero, only pointers (to zero values) and nothing else;
// else every field non-zero, slices and maps with entries, pointers to
// filled values (delegation chains three links deep).
func fill(v reflect.Value, zero bool, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if depth > 3 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), zero, depth+1)
		return
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), zero, depth)
		}
		return
	}
	if zero {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d<&>", depth))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(-7 - depth))
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[contract.RawJSON]() {
			v.SetBytes([]byte(` {"a": [1, "<b>"]} `))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), zero, depth)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		e := reflect.New(v.Type().Elem()).Elem()
		if e.Kind() == reflect.Interface {
			e.Set(reflect.ValueOf("v"))
		} else {
			fill(e, zero, depth)
		}
		v.SetMapIndex(reflect.ValueOf("k"), e)
	default:
		panic(fmt.Sprintf("fill: a %s field: teach fill and MarshalInput", v.Type()))
	}
}

// TestMarshalInputEdges: a nil input is null, as encoding/json writes it;
// a delegation chain that loops is an error (encoding/json's too), a long
// one that does not is written.
func TestMarshalInputEdges(t *testing.T) {
	if b, err := contract.MarshalInput(nil); err != nil || string(b) != "null" {
		t.Errorf("MarshalInput(nil) = %s, %v", b, err)
	}
	loop := &contract.Actor{Sub: "a"}
	loop.Act = loop
	in := &contract.Input{Token: &contract.TokenClaims{Act: loop}}
	if _, err := json.Marshal(in); err == nil {
		t.Fatal("encoding/json wrote a loop")
	}
	if b, err := contract.MarshalInput(in); err == nil {
		t.Errorf("MarshalInput wrote a loop: %.100s", b)
	}
	var long *contract.Actor
	for i := range 1500 {
		long = &contract.Actor{Sub: fmt.Sprint(i), Act: long}
	}
	in = &contract.Input{Token: &contract.TokenClaims{Act: long}}
	want, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := contract.MarshalInput(in); err != nil || !bytes.Equal(got, want) {
		t.Errorf("a chain of 1,500 links: %v, same bytes %v", err, bytes.Equal(got, want))
	}
}

// TestMarshalInputRefusesBadArguments: arguments that are not JSON are an
// error, as they are for encoding/json, never an input policy would read
// otherwise.
func TestMarshalInputRefusesBadArguments(t *testing.T) {
	for _, args := range []string{`{"a":`, `{"a":1}x`, "\"\xff", `nul`} {
		in := &contract.Input{Request: contract.Request{Arguments: json.RawMessage(args)}}
		if _, err := json.Marshal(in); err == nil {
			t.Fatalf("encoding/json took arguments %q", args)
		}
		if b, err := contract.MarshalInput(in); err == nil {
			t.Errorf("MarshalInput(arguments %q) = %s, want an error", args, b)
		}
	}
}

// FuzzMarshalInput: for any strings and arguments, MarshalInput and
// encoding/json write the same bytes, or both refuse.
func FuzzMarshalInput(f *testing.F) {
	f.Add("alice", "engineering", "jira.search_issues", []byte(`{"query":"x"}`), int64(1700000000))
	f.Add("a\"<>&\u2028\xff", "\x00\t", "", []byte(" [1, {\"a\" : \"<\u2029>\"}] "), int64(-1))
	f.Add("", "", "t", []byte(`{"a":`), int64(0))
	f.Fuzz(func(t *testing.T, sub, role, tool string, args []byte, now int64) {
		for _, in := range []*contract.Input{
			{
				Client:  &contract.Client{ClientID: sub, AgentModel: role, Attestation: &contract.Attestation{Kind: tool, By: sub}},
				Subject: &contract.Subject{Sub: sub, Roles: []string{role, sub}},
				Token:   &contract.TokenClaims{ClientID: role, Sub: sub, Scp: []string{tool}, Act: &contract.Actor{Sub: role}},
				Request: contract.Request{Tool: tool, Arguments: args, ResourceAttributes: map[string]any{sub: role}},
				Now:     now,
			},
			{Request: contract.Request{Method: sub, Tools: []string{tool, role}, Arguments: args}, Now: now},
			{
				Token: &contract.TokenClaims{Act: &contract.Actor{Sub: sub, Act: &contract.Actor{Sub: tool}}},
				Request: contract.Request{ToolDefinition: &contract.ToolDefinition{Hash: tool, Matches: now%2 == 0},
					ToolDefinitions: map[string]contract.ToolDefinition{sub: {Hash: role}}, Actor: &contract.Client{ClientID: sub},
					AudienceClient: &contract.Client{ClientID: role, Attestation: &contract.Attestation{Kind: tool, Machine: true}}},
				Approval: &contract.GrantedApproval{ID: sub, Rule: role, Approver: contract.ApprovalPerson{Sub: tool, Groups: []string{sub}}, GrantedAt: now},
			},
		} {
			want, wantErr := json.Marshal(in)
			got, err := contract.MarshalInput(in)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("MarshalInput error %v, encoding/json's %v", err, wantErr)
			}
			if err == nil && !bytes.Equal(got, want) {
				t.Fatalf("MarshalInput:\n%q\nencoding/json:\n%q", got, want)
			}
		}
	})
}

// BenchmarkMarshalInput: a tools/call input encoded by MarshalInput and by
// encoding/json, in the same run, with the CPU's caches warm and evicted
// before each encoding (as between calls a millisecond apart):
// go test -run '^$' -bench MarshalInput ./contract/
func BenchmarkMarshalInput(b *testing.B) {
	in := &contract.Input{
		Client:  &contract.Client{ClientID: "c-ci-bot", AgentProvider: "ci", Verified: true, Attestation: &contract.Attestation{Kind: contract.AttestationOperator, By: "admin", Provider: "ci", Machine: true}},
		Token:   &contract.TokenClaims{ClientID: "c-ci-bot", Scp: []string{"jira:read"}, Aud: []string{"http://127.0.0.1:8080/mcp"}, Iat: 1700000000, Exp: 1700003600},
		Request: contract.Request{Backend: "jira", Method: "tools/call", Tool: "jira.search_issues", Arguments: json.RawMessage(`{"query":"project = SEC"}`), ToolDefinition: &contract.ToolDefinition{Hash: "sha256:0123456789abcdef"}},
		Now:     1700000100,
	}
	evict := latency.EvictCaches()
	for _, enc := range []struct {
		name string
		fn   func(*contract.Input) ([]byte, error)
	}{
		{"encoding-json", func(in *contract.Input) ([]byte, error) { return json.Marshal(in) }},
		{"MarshalInput", contract.MarshalInput},
	} {
		for _, cold := range []bool{false, true} {
			name := enc.name
			if cold {
				name += "/cold"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				var total time.Duration
				for i := 0; b.Loop(); i++ {
					if cold {
						evict(i)
					}
					start := time.Now()
					if _, err := enc.fn(in); err != nil {
						b.Fatal(err)
					}
					total += time.Since(start)
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e3, "µs/encoding")
			})
		}
	}
}

// TestMarshalInputParts: the token's part and the rest, put back together
// as the policy engine puts them (wasm.MergeInput), are the input
// MarshalInput writes, member for member, for every shape of input and
// with every field set.
func TestMarshalInputParts(t *testing.T) {
	all := inputs()
	for _, zero := range []bool{false, true} {
		var in contract.Input
		fill(reflect.ValueOf(&in).Elem(), zero, 0)
		all[fmt.Sprintf("every field (zero %v)", zero)] = &in
	}
	for name, in := range all {
		t.Run(name, func(t *testing.T) {
			whole, err := contract.MarshalInput(in)
			if err != nil {
				t.Fatal(err)
			}
			shared, rest, err := contract.MarshalInputParts(in)
			if err != nil {
				t.Fatal(err)
			}
			var ms []wasm.Member
			for i, m := range shared {
				if i > 0 && m.Name <= shared[i-1].Name { // client, subject, token
					t.Errorf("shared members out of order: %q after %q", m.Name, shared[i-1].Name)
				}
				ms = append(ms, wasm.Member(m))
			}
			var restMembers map[string]json.RawMessage
			if err := json.Unmarshal(rest, &restMembers); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"client", "subject", "token"} {
				if _, ok := restMembers[name]; ok {
					t.Errorf("the rest has the token's part's %s too", name)
				}
			}
			merged, err := wasm.MergeInput(ms, rest)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(merged, &got); err != nil {
				t.Fatalf("the parts put together are not JSON: %v\n%s", err, merged)
			}
			if err := json.Unmarshal(whole, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("parts:\n%s\nMarshalInput:\n%s", merged, whole)
			}
		})
	}
}
