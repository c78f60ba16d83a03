package asrv_test

import (
	"context"
	"strings"
	"testing"
)

// FuzzIntrospectToken feeds arbitrary bearer strings to introspection (the
// gateway's hot path, on whatever an agent sends): it never fails and never
// answers active, except for the one real token, itself and nothing
// derived from it — a token with a byte changed, cut short, lengthened or
// re-cased is inactive.
func FuzzIntrospectToken(f *testing.F) {
	ta := newTestAS(f)
	real := ta.machineToken("ci-bot", "jira:read")
	key, sig, _ := strings.Cut(real, ".")
	for _, s := range []string{
		real, "", ".", "..", key, sig, "." + sig, key + ".", key + "." + sig + "x", key + "x." + sig,
		strings.ToUpper(real), real[:len(real)-1], "pbac_at_" + real, real + " ", "\x00" + real,
		strings.Repeat("a", 4096), "ory_at_" + key + "." + sig, key + "." + key,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		res, err := ta.as.Introspect(context.Background(), token, ta.resource)
		if err != nil {
			t.Fatalf("introspect %q: %v (an unknown token is inactive, not an error)", token, err)
		}
		if res.Active != (token == real) {
			t.Fatalf("introspect %q: active=%v, want active only for the issued token", token, res.Active)
		}
	})
}
