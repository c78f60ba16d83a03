package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/canon"
	"github.com/pbac-gateway/pbac/wasm"
)

var updateCanonical = flag.Bool("update-canonical", false, "rewrite policy/canonical.rego from internal/canon")

// canonicalRego is policy/canonical.rego as internal/canon defines it.
func canonicalRego() string {
	return `# Code generated from internal/canon by TestCanonicalRegoIsGenerated
# (rego/canonical_test.go); DO NOT EDIT. Regenerate with
#   go test ./rego -run TestCanonicalRegoIsGenerated -update-canonical
#
# The characters of the canonical form of path and name arguments (see
# internal/canon and rego/README.md): the gateway refuses every other
# spelling before policy, and canonical_value (tiers.rego) denies it.
package pbac

# A string of the ASCII characters a canonical value may hold (printable,
# but "\" and "%"): cheap to match, it decides almost every value.
canonical_ascii := ` + "`" + canon.ASCIIPattern() + "`" + `

# A character no path, name or argument name may hold: controls, "\",
# "%", format and separator characters other than the space, private use,
# U+FFFD, noncharacters, every character that NFKC or case folding turns
# into ASCII, and the symbols that look like "/", "\", "." or "%".
# Explicit ranges, so that every engine reads it alike. OPA's Wasm target
# compiles it on every call (about a millisecond): policy matches it only
# when canonical_ascii does not match.
canonical_refused := ` + "`" + canon.RefusedPattern() + "`" + `
`
}

// TestCanonicalRegoIsGenerated keeps the policy's patterns identical to
// internal/canon, the gateway's and the demo backends' definition.
func TestCanonicalRegoIsGenerated(t *testing.T) {
	want := canonicalRego()
	path := filepath.Join("policy", "canonical.rego")
	if *updateCanonical {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is not what internal/canon generates: run go test ./rego -run TestCanonicalRegoIsGenerated -update-canonical", path)
	}
}

// TestPolicyCanonicalAgreesWithCanon: on interesting strings and random
// ones from an alphabet of troublemakers, the policy (OPA's evaluator; the
// Wasm one is held to it by the differential tests) accepts every path the
// gateway accepts, and refuses the others, except those only Unicode
// normalization tells apart (NFC, NFKC), which policy cannot compute and
// the gateway refuses before policy.
func TestPolicyCanonicalAgreesWithCanon(t *testing.T) {
	r := shippedReference(t)
	corpus := []string{"/", "/a", "/prod/secrets/db.env", " /prod/secrets/db.env", "/a//b", "/a/./b", "/a/../b", "/a/", "/a.",
		"/a /b", "/a/ b", "/a\\b", "/a%2fb", "/caf\u00e9", "/cafe\u0301", "/\u212b", "/\uff0f", "/\u2215", "/\u200b", "/\u017f", "a/b"}
	alphabet := []rune{'/', '/', '/', 'a', 'b', '.', ' ', '%', '\\', '\t', 0, 0x7f, '"', '<', '&', 0x2028, 0xe9, 0x301, 0x212b, 0xff0f, 0x2215, 0x200b,
		0x17f, 0x212a, 0xa0, 0x3000, 0xfeff, 0x202e, 0xfffd, 0xe000, 0x30ce, 0x6587, 0xfb01, 0x1d400, 0x2024}
	corpus = append(corpus, troublemakers(rand.New(rand.NewPCG(14, 2)), 400, "", 8, alphabet)...)
	// The Wasm module (what the gateway runs) must say the same as the
	// reference: its ASCII fast path (plain_ascii) takes the slower path
	// for strings it cannot vouch for, never the other way round.
	b, err := BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := loadWasm(t, b, b.Data)
	for _, s := range corpus {
		in := map[string]any{
			"client": map[string]any{"client_id": "c1", "agent_provider": "claude-code", "verified": true},
			"token": map[string]any{"client_id": "c1", "scp": []string{"drive:read"}, "aud": []string{"https://gw.example/mcp"},
				"iat": 1700000000, "exp": 1700000300},
			"request": map[string]any{"backend": "drive", "method": "tools/call", "tool": "drive.read_file",
				"arguments": map[string]any{"path": s}},
			"now": 1700000100,
		}
		raw, _ := json.Marshal(in)
		wd, d := toolCallBoth(t, w, r, raw)
		reasons, _ := json.Marshal(d["reasons"])
		if wr, _ := json.Marshal(wd["reasons"]); string(wr) != string(reasons) {
			t.Errorf("%q: wasm says %s, the reference %s", s, wr, reasons)
		}
		policyOK := !strings.Contains(string(reasons), "argument path is not a canonical path")
		err := canon.Check(canon.KindPath, s)
		switch {
		case err == nil && !policyOK:
			t.Errorf("%q: the gateway accepts it, policy refuses it: %s", s, reasons)
		case err != nil && policyOK && !strings.Contains(err.Error(), "normalization"):
			t.Errorf("%q: policy accepts it, the gateway refuses it (%v)", s, err)
		}
	}
}

// TestRoleConstraintAgreesWithCanon: a role's argument constraint judges the
// spelling of its value by itself (canonical_alone), in the Wasm module as
// in the reference, as the gateway's canon.Check judges a constrained
// argument (the ref kind): on a constraint to /public on an argument the
// catalogue gives no kind (folder), so that only the constraint judges it,
// a value under /public is allowed exactly when canon.Check accepts it
// (but for what only Unicode normalization tells apart, which the gateway
// refuses before policy). Some values come with their characters escaped
// as UTF-16 surrogates, which the Wasm engine reads as Go does (OPA's own
// Wasm parser misreads some: wasm/surrogates.go).
func TestRoleConstraintAgreesWithCanon(t *testing.T) {
	ctx := context.Background()
	b, err := BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		t.Fatal(err)
	}
	contractor := data["roles"].(map[string]any)["contractor"].(map[string]any)
	contractor["arg_constraints"] = map[string]any{"drive": map[string]any{"arg": "folder", "path_prefixes": []string{"/public"}, "required": true}}
	changed, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReference(ctx, Sources(), changed)
	if err != nil {
		t.Fatal(err)
	}
	w := loadWasm(t, b, changed)
	// Each value as Go's encoder writes it (literal "") or as the JSON
	// string literal given.
	type value struct{ v, literal string }
	var corpus []value
	for _, v := range []string{"/public", "/public/x", "/public/a\"b", "/public/caf\u00e9", "/public/a<b>&c", "/public/", "/public//x",
		"/public/./x", "/public/../eng", "/public/x ", "/public/\u200bx", "/public\uff0fx", "/public/%2e%2e/eng", "/public\\x",
		"/public/x\u007f", "/public/x\n", "/public/\U0001d400", "/public/\U000e0001", "/public/\ufffd"} {
		corpus = append(corpus, value{v: v})
	}
	alphabet := []rune{'/', '/', 'a', 'b', '.', ' ', '%', '\\', '\t', 0, 0x7f, '"', '<', '&', 0x2028, 0xe9, 0x301, 0x212b, 0xff0f, 0x2215,
		0x200b, 0x17f, 0x212a, 0xa0, 0xfeff, 0x202e, 0xfffd, 0xe000, 0x6587, 0xfb01, 0x1d400, 0xe0001, 0x2024}
	for _, v := range troublemakers(rand.New(rand.NewPCG(21, 9)), 300, "/public/", 6, alphabet) {
		corpus = append(corpus, value{v: v})
	}
	// Escaped as a client may send them.
	for _, literal := range []string{`"/public/\ud83d\ude00"`, `"/public/\udb40\udc01"`, `"/public/\udb40\udc7f"`, `"/public/\ud840\udc00"`,
		`"/public/\uDBFF\uDFFD"`, `"/public/\ud800\ud800"`, `"/public/\udc00\udc00"`, `"/public/a\u200bb"`, `"/public/caf\u00e9"`} {
		var v string
		if err := json.Unmarshal([]byte(literal), &v); err != nil {
			t.Fatal(err)
		}
		corpus = append(corpus, value{v, literal})
	}
	allowed := 0
	for _, c := range corpus {
		v := c.v
		in := map[string]any{
			"client": map[string]any{"client_id": "c1", "agent_provider": "claude-code", "agent_model": "m", "verified": true,
				"single_use_access_tokens": false},
			"subject": map[string]any{"sub": "carol", "roles": []string{"contractor"}},
			"token": map[string]any{"client_id": "c1", "sub": "carol", "scp": []string{"drive:read"}, "aud": []string{"https://gw.example/mcp"},
				"iat": 1700000000, "exp": 1700000300},
			"request": map[string]any{"backend": "drive", "method": "tools/call", "tool": "drive.read_file",
				"arguments": map[string]any{"path": "/public/handbook.md", "folder": v}},
			"now": 1700000100,
		}
		raw, _ := json.Marshal(in)
		if c.literal != "" {
			quoted, _ := json.Marshal(v)
			raw = bytes.Replace(raw, quoted, []byte(c.literal), 1)
		}
		wd, d := toolCallBoth(t, w, r, raw)
		reasons, _ := json.Marshal(d["reasons"])
		if wr, _ := json.Marshal(wd["reasons"]); string(wr) != string(reasons) || wd["allow"] != d["allow"] {
			t.Errorf("%q: wasm says %v %s, the reference %v %s", v, wd["allow"], wr, d["allow"], reasons)
		}
		policyOK := d["allow"] == true
		if policyOK {
			allowed++
		}
		err := canon.Check(canon.KindRef, v)
		switch {
		case err == nil && !policyOK:
			t.Errorf("%q: the gateway accepts it, policy refuses it: %s", v, reasons)
		case err != nil && policyOK && !strings.Contains(err.Error(), "normalization"):
			t.Errorf("%q: policy accepts it, the gateway refuses it (%v)", v, err)
		}
	}
	if allowed == 0 || allowed == len(corpus) {
		t.Fatalf("%d of %d values allowed: the corpus does not test both sides", allowed, len(corpus))
	}
	t.Logf("%d of %d values allowed", allowed, len(corpus))
}

// troublemakers returns n strings: prefix, then 1 to max runes drawn from
// alphabet.
func troublemakers(rng *rand.Rand, n int, prefix string, max int, alphabet []rune) []string {
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		b.WriteString(prefix)
		for range 1 + rng.IntN(max) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		out = append(out, b.String())
	}
	return out
}

// loadWasm loads b's module with data on an engine closed when the test
// ends.
func loadWasm(t *testing.T, b *Bundle, data []byte) *wasm.Policy {
	t.Helper()
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.NewConfig().WithEvalTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(ctx) })
	w, err := e.Load(ctx, b.Wasm, data)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// toolCallBoth decides raw, a pbac/tool_call input, in the Wasm module w and
// in the reference r.
func toolCallBoth(t *testing.T, w *wasm.Policy, r *Reference, raw []byte) (fromWasm, fromReference map[string]any) {
	t.Helper()
	ctx := context.Background()
	out, err := w.Eval(ctx, "pbac/tool_call", raw)
	if err != nil {
		t.Fatalf("%s: wasm: %v", raw, err)
	}
	if err := json.Unmarshal(out, &fromWasm); err != nil {
		t.Fatalf("%s: wasm: %s", raw, out)
	}
	out, err = r.Decide(ctx, "pbac/tool_call", raw)
	if err != nil {
		t.Fatalf("%s: reference: %v", raw, err)
	}
	if err := json.Unmarshal(out, &fromReference); err != nil {
		t.Fatalf("%s: reference: %s", raw, out)
	}
	return fromWasm, fromReference
}
