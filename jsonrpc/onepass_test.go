package jsonrpc

import "testing"

// The one-pass parse reads params and _meta while it validates the message;
// a message it refuses is refused with the wording of the whole document's
// parse, where the value in error is skipped, not descended into.
func TestParseMessageErrorWording(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":}}`,
			`malformed JSON: jsontext: missing value after object name within "/params/name" after offset 63`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}`,
			`duplicate object key: jsontext: duplicate object member name "name" within "/params"`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"a":1,"a":2}}}`,
			`duplicate object key: jsontext: duplicate object member name "a" within "/params/_meta"`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}`,
			`malformed JSON: unexpected end`},
	} {
		_, err := Parse([]byte(c.body), 64)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.body, err, c.want)
		}
	}
}
