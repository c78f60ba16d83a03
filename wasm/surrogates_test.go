package wasm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeSurrogates(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`"plain"`, `"plain"`},
		{`"\ud83d\ude00"`, "\"\U0001f600\""},
		{`"\uD83D\uDE00"`, "\"\U0001f600\""},
		{`"\ud840\udc00"`, "\"\U00020000\""},
		{`"/public/\udb40\udc01"`, "\"/public/\U000e0001\""},
		{`"\udbff\udfff"`, "\"\U0010ffff\""},
		{`"\ud800"`, `"\ufffd"`},
		{`"\udc00"`, `"\ufffd"`},
		{`"\ud800\u0041"`, `"\ufffd\u0041"`},
		{`"\ud800x"`, `"\ufffdx"`},
		{`"\udc00\ud800"`, `"\ufffd\ufffd"`},
		{`"\ud800\ud800\udc00"`, "\"\\ufffd\U00010000\""},
		{`"\\ud800"`, `"\\ud800"`},
		{`"\\\ud83d\ude00"`, "\"\\\\\U0001f600\""},
		{`"\u00e9\"\ud83d\ude00"`, "\"\\u00e9\\\"\U0001f600\""},
		{`{"k\ud83d\ude00":["\ud83d\ude00",1,"\udfff"]}`, "{\"k\U0001f600\":[\"\U0001f600\",1,\"\\ufffd\"]}"},
	} {
		if got := string(decodeSurrogates([]byte(c.in))); got != c.want {
			t.Errorf("decodeSurrogates(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// FuzzDecodeSurrogates: for every document validJSON accepts, the rewrite
// is valid, no longer, holds no escaped surrogate, changes nothing when
// there was none, and Go's decoder (OPA's Go evaluator's) reads the same
// value from it as from the document.
func FuzzDecodeSurrogates(f *testing.F) {
	for _, s := range []string{`"\ud83d\ude00"`, `{"a":"\udb40\udc01","b":["\ud800","\\ud800"]}`, `"\ud800\ud800\udc00x"`, `[1,"\uDBFF\uDFFF",{}]`, `"é\u00e9"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		ok, surrogates := checkJSON(doc, 0)
		if !ok {
			return
		}
		out := decodeSurrogates(doc)
		if !validJSON(out) || len(out) > len(doc) {
			t.Fatalf("decodeSurrogates(%q) = %q: not valid, or longer", doc, out)
		}
		if _, left := checkJSON(out, 0); left {
			t.Fatalf("decodeSurrogates(%q) = %q: an escaped surrogate is left", doc, out)
		}
		if !surrogates && !bytes.Equal(out, doc) {
			t.Fatalf("decodeSurrogates(%q) = %q: changed a document without an escaped surrogate", doc, out)
		}
		if a, b := decodeAny(t, doc), decodeAny(t, out); !reflect.DeepEqual(a, b) {
			t.Fatalf("decodeSurrogates(%q) = %q: Go reads %#v, then %#v", doc, out, a, b)
		}
	})
}

func decodeAny(t *testing.T, doc []byte) any {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", doc, err)
	}
	return v
}
