package plugins

import "testing"

// TestDeterministic: a module is memoized only when every host builtin it
// calls is known and reads neither the clock nor randomness.
func TestDeterministic(t *testing.T) {
	tests := []struct {
		builtins []string
		want     bool
	}{
		{nil, true},
		{[]string{"regex.match", "json.patch", "base64.encode"}, true},
		{[]string{"regex.match", "time.now_ns"}, false},
		{[]string{"rand.intn"}, false},
		{[]string{"uuid.rfc4122"}, false},
		{[]string{"io.jwt.decode_verify"}, false},
		{[]string{"crypto.x509.parse_and_verify_certificates"}, false},
		{[]string{"crypto.x509.parse_and_verify_certificates_with_options"}, false},
		{[]string{"no.such.builtin"}, false},
	}
	for _, tt := range tests {
		if got := deterministic(tt.builtins); got != tt.want {
			t.Errorf("deterministic(%v) = %v, want %v", tt.builtins, got, tt.want)
		}
	}
}
