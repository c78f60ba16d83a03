package cimd

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestClientIDRules: the draft's "Client Identifier" section.
func TestClientIDRules(t *testing.T) {
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"https with a path", "https://app.example.com/oauth/client-metadata.json", true},
		{"a port is allowed", "https://app.example.com:8443/client.json", true},
		{"a root path is a path", "https://app.example.com/", true},
		{"a query is allowed (SHOULD NOT, not MUST NOT)", "https://app.example.com/client?v=1", true},
		{"an IP literal host", "https://[2001:db8::1]/client.json", true},
		{"no path component", "https://app.example.com", false},
		{"http scheme", "http://app.example.com/client.json", false},
		{"upper-case scheme is not compared equal", "HTTPS://app.example.com/client.json", false},
		{"fragment", "https://app.example.com/client.json#x", false},
		{"empty fragment", "https://app.example.com/client.json#", false},
		{"username", "https://user@app.example.com/client.json", false},
		{"username and password", "https://user:pw@app.example.com/client.json", false},
		{"dot segment", "https://app.example.com/./client.json", false},
		{"double-dot segment", "https://app.example.com/a/../client.json", false},
		{"trailing double-dot", "https://app.example.com/a/..", false},
		{"percent-encoded dot segment", "https://app.example.com/a/%2e%2E/client.json", false},
		{"percent-encoded slash", "https://app.example.com/agents/x%2F..%2F..%2Fother/client.json", false},
		{"percent-encoded slash, lower case", "https://app.example.com/agents%2fclient.json", false},
		{"percent-encoded backslash", "https://app.example.com/agents/x%5C..%5Cclient.json", false},
		{"other percent-encodings are fine", "https://app.example.com/my%20client.json", true},
		{"dots inside a segment are fine", "https://app.example.com/a..b/.well-known/c.json", true},
		{"space", "https://app.example.com/client .json", false},
		{"backslash", `https://app.example.com\@evil.example/client.json`, false},
		{"non-ASCII", "https://app.example.com/clïent.json", false},
		{"percent-encoded host", "https://%61pp.example.com/client.json", false},
		{"no host", "https:///client.json", false},
		{"port zero", "https://app.example.com:0/client.json", false},
		{"port out of range", "https://app.example.com:70000/client.json", false},
		{"IPv6 zone", "https://[fe80::1%25eth0]/client.json", false},
		{"too long", "https://app.example.com/" + strings.Repeat("a", MaxURLLen), false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseClientID(%q): %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidClientID) {
				t.Fatalf("error %v does not wrap ErrInvalidClientID", err)
			}
		})
	}
}

func TestIsURL(t *testing.T) {
	for id, want := range map[string]bool{
		"https://app.example.com/c.json": true,
		"HTTPS://app.example.com/c.json": true,
		"http://app.example.com/c.json":  true,
		"kQ3xv8xYb0V2s0eJx8ZtqA":         false,
		"https:":                         false,
		"my-agent":                       false,
	} {
		if IsURL(id) != want {
			t.Errorf("IsURL(%q) = %v", id, !want)
		}
	}
}

// TestDocumentRules: the draft's "Client Metadata Document" section and the
// MCP spec's required fields, one row per rule.
func TestDocumentRules(t *testing.T) {
	const id = "https://app.example.com/oauth/client.json"
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "use": "sig",
		"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
	jwkPrivate := map[string]any{"kty": "EC", "crv": "P-256",
		"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
		"d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}
	tests := []struct {
		name   string
		change func(d map[string]any)
		ok     bool
		check  func(t *testing.T, d *Document)
	}{
		{"a public client's document", func(map[string]any) {}, true, func(t *testing.T, d *Document) {
			if d.TokenEndpointAuthMethod != AuthMethodNone || d.ClientName != "Test Agent" || d.Host != "app.example.com" {
				t.Errorf("%+v", d)
			}
		}},
		{"client_id missing", func(d map[string]any) { delete(d, "client_id") }, false, nil},
		{"client_id differs by a trailing slash", func(d map[string]any) { d["client_id"] = id + "/" }, false, nil},
		{"client_id differs in case", func(d map[string]any) { d["client_id"] = strings.ToUpper(id[:10]) + id[10:] }, false, nil},
		{"client_id not a string", func(d map[string]any) { d["client_id"] = 1 }, false, nil},
		{"client_name required (MCP)", func(d map[string]any) { delete(d, "client_name") }, false, nil},
		{"client_name blank", func(d map[string]any) { d["client_name"] = "  " }, false, nil},
		{"client_name with a control character", func(d map[string]any) { d["client_name"] = "Agent\u0007" }, false, nil},
		{"redirect_uris required (MCP)", func(d map[string]any) { delete(d, "redirect_uris") }, false, nil},
		{"redirect_uris empty with the code grant", func(d map[string]any) { d["redirect_uris"] = []string{} }, false, nil},
		{"redirect_uris not strings", func(d map[string]any) { d["redirect_uris"] = []any{1} }, false, nil},
		{"redirect URI with a fragment", func(d map[string]any) { d["redirect_uris"] = []string{"https://app.example.com/cb#x"} }, false, nil},
		{"redirect URI with userinfo", func(d map[string]any) { d["redirect_uris"] = []string{"https://u@app.example.com/cb"} }, false, nil},
		{"redirect URI relative", func(d map[string]any) { d["redirect_uris"] = []string{"/cb"} }, false, nil},
		{"http redirect URI off loopback", func(d map[string]any) { d["redirect_uris"] = []string{"http://app.example.com/cb"} }, false, nil},
		{"private-use scheme redirect URI", func(d map[string]any) { d["redirect_uris"] = []string{"com.example.app:/cb"} }, true, nil},
		{"client_secret forbidden", func(d map[string]any) { d["client_secret"] = "x" }, false, nil},
		{"client_secret_expires_at forbidden", func(d map[string]any) { d["client_secret_expires_at"] = 0 }, false, nil},
		{"client_secret_post forbidden", func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_post" }, false, nil},
		{"client_secret_jwt forbidden", func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_jwt" }, false, nil},
		{"tls_client_auth unsupported", func(d map[string]any) { d["token_endpoint_auth_method"] = "tls_client_auth" }, false, nil},
		{"auth method defaults to none", func(d map[string]any) { delete(d, "token_endpoint_auth_method") }, true, func(t *testing.T, d *Document) {
			if d.TokenEndpointAuthMethod != AuthMethodNone {
				t.Error(d.TokenEndpointAuthMethod)
			}
		}},
		{"private_key_jwt with jwks_uri", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks_uri"] = "https://app.example.com/jwks.json"
		}, true, nil},
		{"private_key_jwt with jwks", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks"] = map[string]any{"keys": []any{jwk}}
		}, true, func(t *testing.T, d *Document) {
			if d.JWKS == nil || len(d.JWKS.Keys) != 1 {
				t.Error("jwks not kept")
			}
		}},
		{"private_key_jwt without keys", func(d map[string]any) { d["token_endpoint_auth_method"] = "private_key_jwt" }, false, nil},
		{"private_key_jwt with both jwks and jwks_uri", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks_uri"] = "https://app.example.com/jwks.json"
			d["jwks"] = map[string]any{"keys": []any{jwk}}
		}, false, nil},
		{"jwks_uri over http", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks_uri"] = "http://app.example.com/jwks.json"
		}, false, nil},
		{"jwks with a private key", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks"] = map[string]any{"keys": []any{jwkPrivate}}
		}, false, nil},
		{"jwks with a symmetric key", func(d map[string]any) {
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks"] = map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"}}}
		}, false, nil},
		{"jwks with an encryption key", func(d map[string]any) {
			k := map[string]any{}
			for n, v := range jwk {
				k[n] = v
			}
			k["use"] = "enc"
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks"] = map[string]any{"keys": []any{k}}
		}, false, nil},
		{"signing alg HS256 refused", func(d map[string]any) { d["token_endpoint_auth_signing_alg"] = "HS256" }, false, nil},
		{"grant types default to authorization_code", func(d map[string]any) { delete(d, "grant_types") }, true, func(t *testing.T, d *Document) {
			if len(d.GrantTypes) != 1 || d.GrantTypes[0] != GrantAuthorizationCode {
				t.Error(d.GrantTypes)
			}
		}},
		{"unsupported grant types are dropped", func(d map[string]any) {
			d["grant_types"] = []string{"authorization_code", "urn:ietf:params:oauth:grant-type:device_code", "implicit"}
		}, true, func(t *testing.T, d *Document) {
			if len(d.GrantTypes) != 1 {
				t.Error(d.GrantTypes)
			}
		}},
		{"no supported grant type", func(d map[string]any) { d["grant_types"] = []string{"password"} }, false, nil},
		{"client_credentials needs private_key_jwt", func(d map[string]any) {
			d["grant_types"] = []string{"client_credentials"}
		}, false, nil},
		{"jwt-bearer (ID-JAG) needs private_key_jwt", func(d map[string]any) {
			d["grant_types"] = []string{GrantJWTBearer}
		}, false, nil},
		{"jwt-bearer (ID-JAG) with private_key_jwt", func(d map[string]any) {
			d["grant_types"] = []string{GrantJWTBearer}
			d["response_types"] = []string{}
			d["token_endpoint_auth_method"] = "private_key_jwt"
			d["jwks_uri"] = "https://app.example.com/jwks.json"
		}, true, func(t *testing.T, d *Document) {
			if len(d.GrantTypes) != 1 || d.GrantTypes[0] != GrantJWTBearer {
				t.Error(d.GrantTypes)
			}
		}},
		{"response type code required for the code grant", func(d map[string]any) { d["response_types"] = []string{"token"} }, false, nil},
		{"scope with a bad token", func(d map[string]any) { d["scope"] = "a  b" }, false, nil},
		{"client_uri must be https", func(d map[string]any) { d["client_uri"] = "javascript:alert(1)" }, false, nil},
		{"application_type native", func(d map[string]any) { d["application_type"] = "native" }, true, nil},
		{"application_type unknown", func(d map[string]any) { d["application_type"] = "desktop" }, false, nil},
		{"unknown members are ignored", func(d map[string]any) { d["x-vendor"] = map[string]any{"a": []int{1}} }, true, nil},
		{"null is absent", func(d map[string]any) { d["client_uri"] = nil }, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := publicDoc(id)
			tc.change(doc)
			d, err := ParseDocument(id, mustJSON(t, doc))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseDocument: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v does not wrap ErrInvalidDocument", err)
			}
			if tc.check != nil && d != nil {
				tc.check(t, d)
			}
		})
	}
}

func TestDocumentSyntax(t *testing.T) {
	const id = "https://app.example.com/c.json"
	for name, body := range map[string]string{
		"repeated member name": `{"client_id":"` + id + `","client_id":"` + id + `","client_name":"a","redirect_uris":["https://a.example/cb"]}`,
		"invalid UTF-8":        "{\"client_id\":\"" + id + "\",\"client_name\":\"\xff\",\"redirect_uris\":[\"https://a.example/cb\"]}",
		"trailing data":        `{"client_id":"` + id + `","client_name":"a","redirect_uris":["https://a.example/cb"]} {}`,
		"not an object":        `"` + id + `"`,
		"empty":                ``,
	} {
		if _, err := ParseDocument(id, []byte(body)); !errors.Is(err, ErrInvalidDocument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRedirectURIMatching: exact, except the port of a loopback URI.
func TestRedirectURIMatching(t *testing.T) {
	d := &Document{RedirectURIs: []string{
		"http://localhost/callback", "http://127.0.0.1/callback", "http://[::1]:3000/cb?x=1",
		"https://app.example.com/cb", "com.example.app:/oauth",
	}}
	tests := []struct {
		name, uri string
		want      string
	}{
		{"exact https", "https://app.example.com/cb", "https://app.example.com/cb"},
		{"exact private-use", "com.example.app:/oauth", "com.example.app:/oauth"},
		{"localhost on any port (RFC 8252 §7.3; Claude Code)", "http://localhost:52163/callback", "http://localhost/callback"},
		{"127.0.0.1 on any port", "http://127.0.0.1:8080/callback", "http://127.0.0.1/callback"},
		{"::1 on another port, same query", "http://[::1]:4000/cb?x=1", "http://[::1]:3000/cb?x=1"},
		{"https path differs", "https://app.example.com/cb2", ""},
		{"https port differs", "https://app.example.com:444/cb", ""},
		{"https host case is not ignored", "https://APP.example.com/cb", ""},
		{"loopback path differs", "http://localhost:5000/other", ""},
		{"loopback query differs", "http://[::1]:4000/cb?x=2", ""},
		{"loopback host differs", "http://127.0.0.1:5000/cb?x=1", ""},
		{"https to loopback is not http", "https://localhost:5000/callback", ""},
		{"userinfo on loopback", "http://evil@localhost:5000/callback", ""},
		{"fragment", "http://localhost:5000/callback#x", ""},
		{"loopback-looking name", "http://localhost.evil.example:5000/callback", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := d.MatchRedirectURI(tc.uri)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("MatchRedirectURI(%q) = %q, %v; want %q", tc.uri, got, ok, tc.want)
			}
		})
	}
	if d.LoopbackOnly() {
		t.Error("a document with an https redirect URI is not LoopbackOnly")
	}
}

// TestSpecialPurposeAddresses: the address check every dial goes through.
func TestSpecialPurposeAddresses(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
		"100.64.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "192.0.0.8",
		"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1", "100::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
		"64:ff9b::a00:1", "64:ff9b:1::1", "2002:a00:1::", "2001::1", "3fff::1",
	}
	allowed := []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "2606:4700:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8"}
	var p addressPolicy
	for _, a := range refused {
		if err := p.check(netip.MustParseAddr(a)); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: %v, want refused", a, err)
		}
	}
	for _, a := range allowed {
		if err := p.check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s: %v, want allowed", a, err)
		}
	}
	lab := addressPolicy{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	for a, ok := range map[string]bool{"127.0.0.1": true, "::ffff:127.0.0.1": true, "10.0.0.1": false, "::1": false} {
		if err := lab.check(netip.MustParseAddr(a)); (err == nil) != ok {
			t.Errorf("allowing 127.0.0.0/8, %s: %v", a, err)
		}
	}
	if err := p.control("udp", "8.8.8.8:53", nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("udp: %v", err)
	}
	if err := p.control("tcp", "[fe80::1%eth0]:443", nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("zoned link-local: %v", err)
	}
}
