package wasm

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func validReference(doc []byte) bool { return utf8.Valid(doc) && json.Valid(doc) }

var validCorpus = []string{
	``, ` `, `{}`, `[]`, `{"a":1}`, ` {"a" : [1, 2.5, -3e+7, 0, -0.0e-1, true, false, null, "x"]} `,
	`{"a":{"b":[{"c":"d"}]},"e":[]}`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\u12"`, `"\u12G4"`, `"\x"`,
	`01`, `-`, `1.`, `1e`, `1e+`, `.5`, `+1`, `-01`, `1.5e3`, `0e0`, `tru`, `truex`, `nul`, `[1,]`, `{"a":1,}`,
	`{"a" 1}`, `{1:2}`, `{"a":}`, `[1 2]`, `[`, `]`, `{`, `}`, `{"a":1}}`, `[[]]]`, `[]{}`, `"abc`, "\"a\x01\"",
	"\"\xff\"", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"", "\"\xf0\x9f\x98\x80\"", "\xef\xbb\xbf{}", "{}\x00", "\"\u2028\"",
	`{"client":{"client_id":"c","verified":true},"token":{"scp":["jira:read"],"iat":1700000000},"now":1700000100}`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
	strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
	"[" + strings.Repeat("[],", 100) + "[]]", "1 2", " \t\r\n1\n", "\v1",
}

// validJSON is exactly utf8.Valid && json.Valid.
func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range validCorpus {
		if got, want := validJSON([]byte(s)), validReference([]byte(s)); got != want {
			t.Errorf("validJSON(%.80q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range validCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if got, want := validJSON(doc), validReference(doc); got != want {
			t.Fatalf("validJSON(%q) = %v, want %v", doc, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	doc := []byte(`{"client":{"client_id":"c-1aaaaaaaaaaaaaaaaaaaaaaaaaaa","agent_provider":"ci-bot","agent_model":"bench","single_use_access_tokens":false,"verified":true},"token":{"client_id":"c-1aaaaaaaaaaaaaaaaaaaaaaaaa","scp":["jira:read"],"aud":["http://127.0.0.1:1/mcp/jira"],"iat":1700000000,"exp":1700000600},"request":{"backend":"jira","method":"tools/call","tool":"jira.search_issues","arguments":{"query":"SEC"}},"now":1700000100}`)
	b.Run("validJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !validJSON(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("utf8.Valid+json.Valid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !validReference(doc) {
				b.Fatal("invalid")
			}
		}
	})
}
