package idp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
)

// jagClaims are a good ID-JAG's claims, issued now by op for the agent
// "agent-1" to act for u-123 at resource.
func jagClaims(op *testProvider, jti string) map[string]any {
	now := op.clock.now()
	return map[string]any{
		"iss": op.issuer, "sub": "u-123", "aud": asIssuer, "client_id": "agent-1", "jti": jti,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": resource, "scope": "jira:read drive:read",
		"email": "dana@example.com", "groups": []string{"engineering"},
	}
}

func (p *testProvider) jagVerifier(mod func(*identity.OIDCConfig)) *idp.IDJAGVerifier {
	p.t.Helper()
	v, err := p.provider(mod).IDJAGVerifier([]string{resource}, spender(p.clock), 0)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

// TestIDJAGAccepted: a grant the provider signed for this server, this
// client and a resource served here yields the person (subject and groups
// mapped as at sign-in), the client, resource and scopes.
func TestIDJAGAccepted(t *testing.T) {
	op := newTestProvider(t)
	for _, typ := range []string{"oauth-id-jag+jwt", "application/OAuth-ID-JAG+JWT"} {
		got, err := op.jagVerifier(nil).Verify(context.Background(), op.key.sign(t, typ, jagClaims(op, "jti-"+typ)), "agent-1")
		if err != nil {
			t.Fatalf("typ %s: %v", typ, err)
		}
		if got.Person.Subject != "u-123" || !slices.Equal(got.Person.Groups, []string{"engineering"}) || got.ClientID != "agent-1" ||
			!slices.Equal(got.Resources, []string{resource}) || !slices.Equal(got.Scopes, []string{"jira:read", "drive:read"}) {
			t.Fatalf("grant %+v", got)
		}
	}
	byEmail := op.jagVerifier(func(c *identity.OIDCConfig) { c.SubjectClaim = "email" })
	claims := jagClaims(op, "j-email")
	claims["email_verified"] = true
	got, err := byEmail.Verify(context.Background(), op.key.sign(t, idp.TypeIDJAG, claims), "agent-1")
	if err != nil || got.Person.Subject != "dana@example.com" {
		t.Fatalf("subject from email: %+v, %v", got, err)
	}
	// An address the provider does not say it verified names nobody.
	if got, err := byEmail.Verify(context.Background(), op.key.sign(t, idp.TypeIDJAG, jagClaims(op, "j-email-unverified")), "agent-1"); err == nil {
		t.Fatalf("an email subject without email_verified: %+v", got)
	}
}

// TestIDJAGRefusals: each check of an ID-JAG refuses the grant.
func TestIDJAGRefusals(t *testing.T) {
	other := newKey(t, "k1")
	for _, tc := range []struct {
		name     string
		typ      string
		mod      func(map[string]any)
		sign     func(t *testing.T, op *testProvider, typ string, c map[string]any) string
		clientID string
		want     error
	}{
		{name: "typ missing", typ: "-"},
		{name: "typ JWT (an ID token)", typ: "JWT"},
		{name: "wrong issuer", mod: func(c map[string]any) { c["iss"] = "https://evil.example" }},
		{name: "wrong audience", mod: func(c map[string]any) { c["aud"] = "https://other-as.example" }},
		{name: "audience among others", mod: func(c map[string]any) { c["aud"] = []string{asIssuer, "https://other-as.example"} }},
		{name: "another client's grant", clientID: "agent-2"},
		{name: "no client_id", mod: func(c map[string]any) { delete(c, "client_id") }},
		{name: "expired", mod: func(c map[string]any) { c["exp"] = c["iat"].(int64) }},
		{name: "no exp", mod: func(c map[string]any) { delete(c, "exp") }},
		{name: "no iat", mod: func(c map[string]any) { delete(c, "iat") }},
		{name: "issued in the future", mod: func(c map[string]any) {
			c["iat"] = c["iat"].(int64) + 600
			c["exp"] = c["iat"].(int64) + 60
		}},
		{name: "lives longer than allowed", mod: func(c map[string]any) { c["exp"] = c["iat"].(int64) + 3600 }},
		{name: "not yet valid", mod: func(c map[string]any) { c["nbf"] = c["iat"].(int64) + 600 }},
		{name: "no jti", mod: func(c map[string]any) { delete(c, "jti") }},
		{name: "no resource", mod: func(c map[string]any) { delete(c, "resource") }},
		{name: "a resource not served here", mod: func(c map[string]any) { c["resource"] = []string{resource, "https://elsewhere.example/mcp"} }},
		{name: "no subject", mod: func(c map[string]any) { delete(c, "sub") }},
		{name: "groups not strings", mod: func(c map[string]any) { c["groups"] = map[string]bool{"engineering": true} }},
		{name: "wrong key with the provider's key id", sign: func(t *testing.T, _ *testProvider, typ string, c map[string]any) string {
			return other.sign(t, typ, c)
		}},
		{name: "payload swapped under the signature", sign: func(t *testing.T, op *testProvider, typ string, c map[string]any) string {
			parts := strings.Split(op.key.sign(t, typ, c), ".")
			c["sub"] = "admin"
			raw, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
		}},
		{name: "alg none", sign: func(t *testing.T, _ *testProvider, typ string, c map[string]any) string {
			raw, _ := json.Marshal(c)
			return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"`+typ+`"}`)) + "." + base64.RawURLEncoding.EncodeToString(raw) + "."
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestProvider(t)
			c := jagClaims(op, "jti-1")
			if tc.mod != nil {
				tc.mod(c)
			}
			typ := tc.typ
			switch typ {
			case "":
				typ = idp.TypeIDJAG
			case "-":
				typ = ""
			}
			sign := tc.sign
			if sign == nil {
				sign = func(t *testing.T, op *testProvider, typ string, c map[string]any) string {
					return op.key.sign(t, typ, c)
				}
			}
			client := tc.clientID
			if client == "" {
				client = "agent-1"
			}
			got, err := op.jagVerifier(nil).Verify(context.Background(), sign(t, op, typ, c), client)
			if !errors.Is(err, idp.ErrInvalidAssertion) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidAssertion", got, err)
			}
		})
	}
}

// TestIDJAGReplay: a grant is accepted once; presented again, by the same
// client or any other, it is refused as a replay.
func TestIDJAGReplay(t *testing.T) {
	op := newTestProvider(t)
	v := op.jagVerifier(nil)
	jag := op.key.sign(t, idp.TypeIDJAG, jagClaims(op, "once"))
	if _, err := v.Verify(context.Background(), jag, "agent-1"); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), jag, "agent-1")
	if !errors.Is(err, identity.ErrReplayed) || !errors.Is(err, idp.ErrInvalidAssertion) {
		t.Fatalf("replayed: %v, want ErrReplayed", err)
	}
	// A refused grant spends nothing: the same jti in a good grant later passes.
	bad := jagClaims(op, "later")
	bad["aud"] = "https://other.example"
	if _, err := v.Verify(context.Background(), op.key.sign(t, idp.TypeIDJAG, bad), "agent-1"); !errors.Is(err, idp.ErrInvalidAssertion) {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), op.key.sign(t, idp.TypeIDJAG, jagClaims(op, "later")), "agent-1"); err != nil {
		t.Fatalf("a jti only a refused grant carried: %v", err)
	}
}

// TestIDJAGProviderDown: keys that cannot be fetched are ErrUnavailable
// (the token endpoint answers temporarily_unavailable), not a bad grant.
func TestIDJAGProviderDown(t *testing.T) {
	op := newTestProvider(t)
	v := op.jagVerifier(nil)
	op.down.Store(true)
	if _, err := v.Verify(context.Background(), op.key.sign(t, idp.TypeIDJAG, jagClaims(op, "j")), "agent-1"); !errors.Is(err, identity.ErrUnavailable) {
		t.Fatalf("Verify with the provider down: %v, want ErrUnavailable", err)
	}
}
