package asrv_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestClientCredentialsExtensionMetadata: the OAuth client credentials
// extension (SEP-1046, ext-auth "Server Metadata Requirements"): the AS
// metadata lists the client_credentials grant and, among
// token_endpoint_auth_methods_supported, client_secret_basic always and
// private_key_jwt where clients of metadata documents (which carry their
// keys) are served, then with token_endpoint_auth_signing_alg_values_supported.
func TestClientCredentialsExtensionMetadata(t *testing.T) {
	_, cfg := newCIMDHost(t)
	for _, tc := range []struct {
		name       string
		opts       []func(*asrv.Config)
		privateKey bool
	}{
		{"secrets only", nil, false},
		{"with metadata documents", []func(*asrv.Config){withMetadata(t, cfg)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := newTestAS(t, tc.opts...).as.Metadata()
			grants, _ := md["grant_types_supported"].([]string)
			if !slices.Contains(grants, "client_credentials") {
				t.Errorf("grant_types_supported %v lacks client_credentials", grants)
			}
			methods, _ := md["token_endpoint_auth_methods_supported"].([]string)
			if !slices.Contains(methods, asrv.AuthMethodSecretBasic) {
				t.Errorf("token_endpoint_auth_methods_supported %v lacks client_secret_basic", methods)
			}
			if got := slices.Contains(methods, "private_key_jwt"); got != tc.privateKey {
				t.Errorf("private_key_jwt advertised: %v, want %v (%v)", got, tc.privateKey, methods)
			}
			algs, _ := md["token_endpoint_auth_signing_alg_values_supported"].([]string)
			if tc.privateKey && len(algs) == 0 {
				t.Error("private_key_jwt without token_endpoint_auth_signing_alg_values_supported")
			}
		})
	}
}

// TestClientCredentialsExtensionSecrets: a machine client gets a token
// with the client credentials grant, its secret sent as the extension's
// example sends it (in the body) or with HTTP Basic, as registered; the
// other way, no secret or a wrong one are refused.
func TestClientCredentialsExtensionSecrets(t *testing.T) {
	ta := newTestAS(t)
	type creds struct{ id, secret string }
	reg := func(method string) creds {
		out := ta.register(map[string]any{
			"client_name": "batch " + method, "grant_types": []string{"client_credentials"},
			"token_endpoint_auth_method": method, "software_statement": ta.statement("ci-bot", false),
		})
		if out["application_type"] != asrv.ApplicationTypeWeb {
			t.Fatalf("a client without redirect URIs registered as %v, want web", out["application_type"])
		}
		return creds{out["client_id"].(string), out["client_secret"].(string)}
	}
	basic, post := reg(asrv.AuthMethodSecretBasic), reg(asrv.AuthMethodSecretPost)
	form := func(c creds, inBody bool) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "resource": {ta.resource}, "scope": {"jira:read"}}
		if inBody {
			v.Set("client_id", c.id)
			if c.secret != "" {
				v.Set("client_secret", c.secret)
			}
		}
		return v
	}
	for _, tc := range []struct {
		name     string
		user     string
		pass     string
		values   url.Values
		wantCode int
	}{
		{"basic", basic.id, basic.secret, form(basic, false), http.StatusOK},
		{"secret in the body", "", "", form(post, true), http.StatusOK},
		{"basic client, secret in the body", "", "", form(basic, true), http.StatusUnauthorized},
		{"wrong secret", basic.id, "not-the-secret", form(basic, false), http.StatusUnauthorized},
		{"no secret", "", "", form(creds{id: basic.id}, true), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := ta.form(asrv.PathToken, tc.user, tc.pass, tc.values)
			if status != tc.wantCode {
				t.Fatalf("got %d %v, want %d", status, out, tc.wantCode)
			}
			if tc.wantCode != http.StatusOK {
				return
			}
			if out["access_token"] == nil || out["refresh_token"] != nil || out["scope"] != "jira:read" {
				t.Fatalf("token response %v: want an access token for jira:read and no refresh token", out)
			}
		})
	}
}
