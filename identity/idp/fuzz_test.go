package idp_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/identity/idp"
)

// FuzzVerifyIDToken: no input makes the ID token check panic, and what it
// accepts names exactly the person a token the provider signed names (a
// fuzzer cannot forge the provider's signature, so anything else accepted
// is a hole).
func FuzzVerifyIDToken(f *testing.F) {
	op := newTestProvider(f)
	pr := op.provider(nil)
	good := op.goodIDToken("n")
	f.Add(good)
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(good[:len(good)-3])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := pr.VerifyIDToken(context.Background(), raw, "n")
		if err != nil {
			return
		}
		if p.Subject != "u-123" || p.Name != "Dana Engineer" || !slices.Equal(p.Groups, []string{"engineering", "oncall"}) {
			t.Fatalf("accepted %q as %+v", raw, p)
		}
	})
}

// FuzzVerifyIDJAG: likewise for identity assertion grants, and a grant is
// never accepted twice.
func FuzzVerifyIDJAG(f *testing.F) {
	op := newTestProvider(f)
	pr := op.provider(nil)
	good := op.key.sign(f, idp.TypeIDJAG, jagClaims(op, "fuzz"))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(strings.ToUpper(good))
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6Im9hdXRoLWlkLWphZytqd3QifQ.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := pr.IDJAGVerifier([]string{resource}, spender(op.clock), 0)
		if err != nil {
			t.Fatal(err)
		}
		g, err := v.Verify(context.Background(), raw, "agent-1")
		if err != nil {
			return
		}
		if g.Person.Subject != "u-123" || g.JTI != "fuzz" || !slices.Equal(g.Resources, []string{resource}) {
			t.Fatalf("accepted %q as %+v", raw, g)
		}
		if _, err := v.Verify(context.Background(), raw, "agent-1"); err == nil {
			t.Fatalf("accepted %q twice", raw)
		}
	})
}
