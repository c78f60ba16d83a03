package cimd

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseClientID: any string is refused with ErrInvalidClientID or
// accepted as an https URL with a host and a path, without userinfo,
// fragment or dot segment.
func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"https://a.example/c.json", "https://a.example", "https://u@a.example/c", "https://a.example/../c",
		"https://a.example/%2e%2e/c", "https://a.example/a%2F..%2Fc", "https://[::1]:443/c", "HTTPS://a.example/c", "https://a.example/c#f", "https://a.example:99999/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		u, err := ParseClientID(id)
		if err != nil {
			if !errors.Is(err, ErrInvalidClientID) {
				t.Fatalf("error %v does not wrap ErrInvalidClientID", err)
			}
			return
		}
		if !IsURL(id) || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.EscapedPath() == "" ||
			strings.Contains(id, "/../") || strings.HasSuffix(id, "/..") || strings.Contains(id, "/./") ||
			strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
			t.Fatalf("accepted %q as %#v", id, u)
		}
	})
}

// FuzzParseDocument: any body is refused with ErrInvalidDocument or
// accepted as a document that names itself and keeps the draft's rules.
func FuzzParseDocument(f *testing.F) {
	const id = "https://a.example/c.json"
	f.Add([]byte(`{"client_id":"` + id + `","client_name":"A","redirect_uris":["http://localhost/cb"]}`))
	f.Add([]byte(`{"client_id":"` + id + `","client_name":"A","redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://a.example/jwks"}`))
	f.Add([]byte(`{"client_id":"` + id + `","client_name":"A","redirect_uris":[],"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}`))
	f.Add([]byte(`{"client_id":"` + id + `","client_secret":"x"}`))
	f.Add([]byte(`{"client_id":1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseDocument(id, body)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v does not wrap ErrInvalidDocument", err)
			}
			return
		}
		if d.ClientID != id || d.ClientName == "" || d.RedirectURIs == nil || len(d.GrantTypes) == 0 {
			t.Fatalf("accepted %+v", d)
		}
		switch d.TokenEndpointAuthMethod {
		case AuthMethodNone:
		case AuthMethodPrivateKeyJWT:
			if (d.JWKS == nil) == (d.JWKSURI == "") {
				t.Fatalf("private_key_jwt with jwks %v and jwks_uri %q", d.JWKS, d.JWKSURI)
			}
			if d.JWKS != nil {
				for _, k := range d.JWKS.Keys {
					if !k.IsPublic() {
						t.Fatal("a private key was accepted")
					}
				}
			}
		default:
			t.Fatalf("auth method %q accepted", d.TokenEndpointAuthMethod)
		}
		for _, r := range d.RedirectURIs {
			if checkRedirectURI(r) != nil {
				t.Fatalf("redirect URI %q accepted", r)
			}
		}
		if len(d.RedirectURIs) > 0 {
			if got, ok := d.MatchRedirectURI(d.RedirectURIs[0]); !ok || got != d.RedirectURIs[0] {
				t.Fatalf("a registered URI does not match itself")
			}
		}
	})
}

// FuzzMatchRedirectURI: a match is a registered URI, equal to the request
// or differing from it only in the port of a loopback URI.
func FuzzMatchRedirectURI(f *testing.F) {
	d := &Document{RedirectURIs: []string{"http://localhost/callback", "http://127.0.0.1:3000/cb", "https://a.example/cb"}}
	for _, s := range []string{"http://localhost:5555/callback", "http://127.0.0.1/cb", "https://a.example/cb", "http://u@localhost:1/callback"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		got, ok := d.MatchRedirectURI(uri)
		if !ok {
			return
		}
		if got == uri {
			return
		}
		if !strings.HasPrefix(uri, "http://") || strings.Contains(uri, "@") || strings.Contains(uri, "#") || checkRedirectURI(uri) != nil {
			t.Fatalf("%q matched %q", uri, got)
		}
	})
}

// FuzzKeySet: a key set is refused or holds only public signing keys.
func FuzzKeySet(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		set, err := ParseKeySet(raw)
		if err != nil {
			return
		}
		if len(set.Keys) == 0 || len(set.Keys) > maxKeys {
			t.Fatalf("%d keys", len(set.Keys))
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || k.Use != "" && k.Use != "sig" {
				t.Fatalf("key %+v accepted", k)
			}
		}
	})
}

// FuzzFreshness: caching headers never give a negative lifetime, and
// no-store is always seen.
func FuzzFreshness(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", "no-cache, max-age=10", "max-age=-1", "max-age=99999999999999999999", `max-age="5"`, "max-age=1, max-age=2"} {
		f.Add(s, "Sat, 01 Aug 2026 12:10:00 GMT", "30")
	}
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, cc, expires, age string) {
		h := http.Header{}
		h.Set("Cache-Control", cc)
		h.Set("Expires", expires)
		h.Set("Age", age)
		fr := freshnessOf(h, now)
		if fr.lifetime < 0 {
			t.Fatalf("negative lifetime %s", fr.lifetime)
		}
		if !fr.noStore {
			for _, d := range strings.Split(cc, ",") {
				if name, _, _ := strings.Cut(d, "="); strings.EqualFold(strings.TrimSpace(name), "no-store") {
					t.Fatalf("no-store missed in %q", cc)
				}
			}
		}
		r := &Resolver{cfg: Config{}.withDefaults()}
		if ttl, ok := r.lifetime(fr); ok && (ttl < r.cfg.CacheMin || ttl > r.cfg.CacheMax) {
			t.Fatalf("lifetime %s outside [%s, %s]", ttl, r.cfg.CacheMin, r.cfg.CacheMax)
		}
	})
}

// FuzzVerifyAssertion: whatever the client_assertion, Verify refuses it
// with ErrInvalidAssertion unless it is signed by the client's key.
func FuzzVerifyAssertion(f *testing.F) {
	key := newECKey(f, "k1")
	const id = "https://agent.example/client.json"
	doc := privateKeyJWTDoc(f, id, key)
	r, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = r.Close() })
	clk := newClock()
	v := newTestVerifier(f, r, clk.Now)
	f.Add(key.sign(f, map[string]any{"iss": id, "sub": id, "aud": testIssuer, "jti": "a", "exp": clk.Now().Add(time.Minute).Unix()}, nil))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, assertion string) {
		err := v.Verify(t.Context(), doc, assertion)
		if err != nil && !errors.Is(err, ErrInvalidAssertion) {
			t.Fatalf("error %v does not wrap ErrInvalidAssertion", err)
		}
		_ = AssertionSubject(assertion)
	})
}
