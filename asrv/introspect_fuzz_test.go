package asrv_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/asrv"
)

// FuzzIntrospectToken feeds arbitrary bearer strings to introspection (the
// gateway's hot path, on whatever an agent sends): it never fails and never
// answers active, except for the one real token, itself and nothing
// derived from it — a token with a byte changed, cut short, lengthened or
// re-cased is inactive.
func FuzzIntrospectToken(f *testing.F) {
	ta := newTestAS(f)
	reg := ta.register(map[string]any{
		"client_name": "ci bot", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"software_statement":         ta.statement("ci-bot", false),
	})
	cc := clientcredentials.Config{
		ClientID: reg["client_id"].(string), ClientSecret: reg["client_secret"].(string),
		TokenURL: ta.srv.URL + asrv.PathToken, Scopes: []string{"jira:read"},
		EndpointParams: url.Values{"resource": {ta.resource}},
	}
	tok, err := cc.Token(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	real := tok.AccessToken
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
