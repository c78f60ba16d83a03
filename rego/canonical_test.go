package rego

import (
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
	rng := rand.New(rand.NewPCG(14, 2))
	for range 400 {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		corpus = append(corpus, b.String())
	}
	// The Wasm module (what the gateway runs) must say the same as the
	// reference: its ASCII fast path (plain_ascii) takes the slower path
	// for strings it cannot vouch for, never the other way round.
	b, err := BuildShipped(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, err := wasm.NewEngine(context.Background(), wasm.NewConfig().WithEvalTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	w, err := e.Load(context.Background(), b.Wasm, b.Data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range corpus {
		in := map[string]any{
			"client": map[string]any{"client_id": "c1", "agent_provider": "claude-code", "verified": true},
			"token": map[string]any{"client_id": "c1", "scp": []string{"drive:read"}, "aud": []string{"https://gw.example/mcp"},
				"iat": 1700000000, "exp": 1700000300},
			"request": map[string]any{"backend": "drive", "method": "tools/call", "tool": "drive.read_file",
				"arguments": map[string]any{"path": s}},
			"now": 1700000100,
		}
		d := decide(t, r, "pbac/tool_call", in)
		reasons, _ := json.Marshal(d["reasons"])
		raw, _ := json.Marshal(in)
		out, err := w.Eval(context.Background(), "pbac/tool_call", raw)
		if err != nil {
			t.Fatalf("%q: wasm: %v", s, err)
		}
		var wd map[string]any
		_ = json.Unmarshal(out, &wd)
		if wr, _ := json.Marshal(wd["reasons"]); string(wr) != string(reasons) {
			t.Errorf("%q: wasm says %s, the reference %s", s, wr, reasons)
		}
		policyOK := !strings.Contains(string(reasons), "argument path is not a canonical path")
		err = canon.Check(canon.KindPath, s)
		switch {
		case err == nil && !policyOK:
			t.Errorf("%q: the gateway accepts it, policy refuses it: %s", s, reasons)
		case err != nil && policyOK && !strings.Contains(err.Error(), "normalization"):
			t.Errorf("%q: policy accepts it, the gateway refuses it (%v)", s, err)
		}
	}
}
