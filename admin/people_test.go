package admin

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRevokeReason: the body of a person's revocation is {} or a one-line
// reason of at most 500 characters, and nothing else.
func TestRevokeReason(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		ok               bool
	}{
		{"empty body", "", "", true},
		{"empty object", "{}", "", true},
		{"a reason", `{"reason": "  left the company "}`, "left the company", true},
		{"500 characters", `{"reason": "` + strings.Repeat("é", 500) + `"}`, strings.Repeat("é", 500), true},
		{"501 characters", `{"reason": "` + strings.Repeat("é", 501) + `"}`, "", false},
		{"two lines", `{"reason": "a\nb"}`, "", false},
		{"a carriage return", `{"reason": "a\rb"}`, "", false},
		{"not a string", `{"reason": 7}`, "", false},
		{"an unknown field", `{"why": "x"}`, "", false},
		{"not an object", `"x"`, "", false},
		{"not JSON", `reason=x`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RevokeReason(strings.NewReader(tc.body))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("RevokeReason(%q) = %q, %v", tc.body, got, err)
			}
		})
	}
}

// FuzzRevokeReason: whatever the body, a reason that is accepted is valid
// UTF-8 on one line within the bound, and its record names the person.
func FuzzRevokeReason(f *testing.F) {
	for _, s := range []string{"", "{}", `{"reason":"left"}`, `{"reason":"\u2028"}`, `{"reason":"a\u0000b"}`, `{"reason":"\xff"}`, `[]`, `{"reason":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		reason, err := RevokeReason(strings.NewReader(body))
		if err != nil {
			return
		}
		if !utf8.ValidString(reason) || strings.ContainsAny(reason, "\r\n") || utf8.RuneCountInString(reason) > maxRevokeReason {
			t.Fatalf("accepted reason %q", reason)
		}
		rec := RevokePersonRecord("alice", "the admin API", reason, PersonRevocation{AccessTokens: 1})
		if rec.Subject != "alice" || rec.Method != MethodRevokePerson || (reason != "" && len(rec.Reasons) != 2) {
			t.Fatalf("record %+v", rec)
		}
	})
}
