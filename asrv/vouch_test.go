package asrv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
)

var (
	vouchCSRF   = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	vouchSelect = regexp.MustCompile(`<select id="vouch" name="vouch">(.*?)</select>`)
)

// userAttestationData turns user attestation on for the developer tier in
// the shipped data, as an operator would.
func userAttestationData(t *testing.T, on bool) []byte {
	t.Helper()
	var d map[string]any
	b, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Data, &d); err != nil {
		t.Fatal(err)
	}
	d["tiers"].(map[string]any)["developer"].(map[string]any)["user_attestation"] = on
	raw, _ := json.Marshal(d)
	return raw
}

// signInVouching loads the sign-in page of a code flow for clientID,
// returns the providers it offers to vouch as, and, when vouch is not
// "-", posts the form as user with that choice and returns the redirect.
func signInVouching(t *testing.T, ta *testAS, clientID, user, vouch string) ([]string, *url.URL, int) {
	t.Helper()
	return signInVouchingFor(t, ta, clientID, user, vouch, "jira:read")
}

// signInVouchingFor is signInVouching asking for scope.
func signInVouchingFor(t *testing.T, ta *testAS, clientID, user, vouch, scope string) ([]string, *url.URL, int) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:45001/cb"},
		"scope": {scope}, "state": {"state-123456789"}, "resource": {ta.resource},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	authURL := ta.srv.URL + asrv.PathAuthorize + "?" + q.Encode()
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var offered []string
	if m := vouchSelect.FindSubmatch(page); m != nil {
		for _, o := range regexp.MustCompile(`<option value="([^"]*)">`).FindAllSubmatch(m[1], -1) {
			if string(o[1]) != "" {
				offered = append(offered, string(o[1]))
			}
		}
	}
	if vouch == "-" {
		return offered, nil, resp.StatusCode
	}
	m := vouchCSRF.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in form (%d): %s", resp.StatusCode, page)
	}
	form := url.Values{"username": {user}, "password": {asrv.DemoPassword}, "csrf_token": {string(m[1])}, "decision": {"approve"}, "vouch": {vouch}}
	resp, err = c.PostForm(authURL, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return offered, loc, resp.StatusCode
}

// TestUserAttestation: issue 17 item 2, user attestation. Off by default
// (the first page refuses an agent nobody vouches for); where policy lets
// people vouch for developer-tier providers, the sign-in page offers them,
// the person's word is recorded on the client and counts for them alone:
// alice's vouched client gets developer scopes for alice, bob cannot claim
// it, and a provider policy does not offer is refused.
func TestUserAttestation(t *testing.T) {
	var reg *plugins.Registry
	ta := newTestAS(t, func(c *asrv.Config) {
		reg = c.Policy.(*plugins.Registry)
		c.UserAttestable = func() []string {
			_, d, err := reg.ActivePolicy()
			if err != nil {
				return nil
			}
			return d.UserAttestable()
		}
	})
	id := ta.register(map[string]any{"client_name": "my agent", "redirect_uris": []string{"http://127.0.0.1:45001/cb"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})["client_id"].(string)

	// Off: refused on the first page, nothing offered.
	if offered, _, status := signInVouching(t, ta, id, "", "-"); status != http.StatusForbidden || offered != nil {
		t.Fatalf("user attestation off: %d, offered %v", status, offered)
	}

	if _, err := reg.SetData(context.Background(), userAttestationData(t, true), "test"); err != nil {
		t.Fatal(err)
	}
	offered, _, status := signInVouching(t, ta, id, "", "-")
	if status != http.StatusOK || strings.Join(offered, ",") != "claude-code" {
		t.Fatalf("user attestation on: %d, offered %v, want [claude-code]", status, offered)
	}
	// Not vouching: not attested.
	if _, loc, _ := signInVouching(t, ta, id, "alice", ""); loc.Query().Get("error") != "access_denied" || !strings.Contains(loc.Query().Get("error_description"), "not attested") {
		t.Fatalf("no vouch: %v", loc)
	}
	// A provider policy does not offer.
	if _, loc, _ := signInVouching(t, ta, id, "alice", "claude-code-trusted"); loc.Query().Get("error") != "access_denied" {
		t.Fatalf("vouch for an unoffered provider: %v", loc)
	}
	// alice vouches: a code, and the client records her word.
	if _, loc, _ := signInVouching(t, ta, id, "alice", "claude-code"); loc.Query().Get("code") == "" {
		t.Fatalf("alice vouching: %v", loc)
	}
	c, err := ta.store.Client(context.Background(), id)
	if err != nil || c.Vouch == nil || c.Vouch.Subject != "alice" || c.Vouch.Provider != "claude-code" {
		t.Fatalf("stored vouch %+v %v", c, err)
	}
	// The whole flow as alice again (her word stands; no need to repeat it).
	tok, err := oauthtest.CodeFlow(context.Background(), ta.srv.URL, id, "http://127.0.0.1:45001/cb", "alice", asrv.DemoPassword, ta.resource, "jira:read")
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("alice's token: %v", err)
	}
	info, err := ta.as.Introspect(context.Background(), tok.AccessToken, ta.resource)
	if err != nil || !info.Active || info.Tier != "developer" || info.Attestation == nil || info.Attestation.Kind != "user" || info.Attestation.By != "alice" {
		t.Fatalf("introspection %+v %v", info, err)
	}
	// bob may neither use alice's word nor replace it.
	if _, loc, _ := signInVouching(t, ta, id, "bob", ""); loc.Query().Get("error") != "access_denied" {
		t.Fatalf("bob without vouching: %v", loc)
	}
	if _, loc, _ := signInVouching(t, ta, id, "bob", "claude-code"); loc.Query().Get("error") != "access_denied" ||
		!strings.Contains(loc.Query().Get("error_description"), "Another person has vouched") {
		t.Fatalf("bob vouching over alice: %v", loc)
	}
	// Turned off again: alice's word no longer counts (policy decides at
	// each use).
	if _, err := reg.SetData(context.Background(), userAttestationData(t, false), "test"); err != nil {
		t.Fatal(err)
	}
	if info, err := ta.as.Introspect(context.Background(), tok.AccessToken, ta.resource); err != nil || info.Active {
		t.Fatalf("after user attestation is turned off: %+v %v", info, err)
	}
}

// userAttestationAS is a test AS whose user attestation follows the active
// policy data, turned on for the developer tier.
func userAttestationAS(t *testing.T) *testAS {
	t.Helper()
	var reg *plugins.Registry
	ta := newTestAS(t, func(c *asrv.Config) {
		reg = c.Policy.(*plugins.Registry)
		c.UserAttestable = func() []string {
			_, d, err := reg.ActivePolicy()
			if err != nil {
				return nil
			}
			return d.UserAttestable()
		}
	})
	if _, err := reg.SetData(context.Background(), userAttestationData(t, true), "test"); err != nil {
		t.Fatal(err)
	}
	return ta
}

// registerPending registers a public client nobody vouches for.
func registerPending(ta *testAS, name string) string {
	return ta.register(map[string]any{"client_name": name, "redirect_uris": []string{"http://127.0.0.1:45001/cb"},
		"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"}})["client_id"].(string)
}

// TestVouchIsRecordedOnlyWhenPolicyAllows: a person's word is weighed
// with the grant it comes with; when policy refuses the grant (bob asks
// for what his role does not give), the word is not recorded, so bob does
// not claim the client and alice may still vouch for it.
func TestVouchIsRecordedOnlyWhenPolicyAllows(t *testing.T) {
	ta := userAttestationAS(t)
	id := registerPending(ta, "my agent")
	_, loc, _ := signInVouchingFor(t, ta, id, "bob", "claude-code", "gitlab:write")
	if loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("bob vouching for a grant policy refuses: %v", loc)
	}
	if c, err := ta.store.Client(t.Context(), id); err != nil || c.Vouch != nil {
		t.Fatalf("a refused grant recorded the vouch: %+v %v", c.Vouch, err)
	}
	if _, loc, _ := signInVouching(t, ta, id, "alice", "claude-code"); loc.Query().Get("code") == "" {
		t.Fatalf("alice vouching after bob's refused word: %v", loc)
	}
	if c, err := ta.store.Client(t.Context(), id); err != nil || c.Vouch == nil || c.Vouch.Subject != "alice" {
		t.Fatalf("alice's vouch: %+v %v", c, err)
	}
}

// TestVouchesPerSubjectAreBounded: a person vouches for at most
// MaxVouchesPerSubject clients; past that the sign-in says so and nothing
// is recorded, while their word for a client they already vouch for
// still counts.
func TestVouchesPerSubjectAreBounded(t *testing.T) {
	ta := userAttestationAS(t)
	var first string
	for i := range asrv.MaxVouchesPerSubject {
		id := registerPending(ta, fmt.Sprintf("agent %d", i))
		if _, err := ta.store.UpdateClient(t.Context(), id, func(c *asrv.Client) error {
			c.Vouch = &asrv.ClientVouch{Subject: "alice", Provider: "claude-code", At: time.Now().UTC()}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = id
		}
	}
	one := registerPending(ta, "one too many")
	_, loc, _ := signInVouching(t, ta, one, "alice", "claude-code")
	if loc == nil || loc.Query().Get("error") != "access_denied" || !strings.Contains(loc.Query().Get("error_description"), fmt.Sprintf("already vouch for %d agents", asrv.MaxVouchesPerSubject)) {
		t.Fatalf("alice vouching past the bound: %v", loc)
	}
	if c, err := ta.store.Client(t.Context(), one); err != nil || c.Vouch != nil {
		t.Fatalf("a vouch past the bound was recorded: %+v %v", c.Vouch, err)
	}
	if _, loc, _ := signInVouching(t, ta, first, "alice", "claude-code"); loc.Query().Get("code") == "" {
		t.Fatalf("alice's word for a client she vouches for already: %v", loc)
	}
	// bob is not bounded by alice's words.
	if _, loc, _ := signInVouching(t, ta, one, "bob", "claude-code"); loc.Query().Get("code") == "" {
		t.Fatalf("bob vouching: %v", loc)
	}
}

// TestVouchNeverCoversMachineUse: a person's word counts for that person
// only, so a client they vouched for that also registered
// client_credentials gets no token acting for no person.
func TestVouchNeverCoversMachineUse(t *testing.T) {
	ta := userAttestationAS(t)
	reg := ta.register(map[string]any{"client_name": "my agent", "redirect_uris": []string{"http://127.0.0.1:45001/cb"},
		"token_endpoint_auth_method": "client_secret_basic", "grant_types": []string{"authorization_code", "client_credentials"}})
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	if _, err := ta.store.UpdateClient(t.Context(), id, func(c *asrv.Client) error {
		c.Vouch = &asrv.ClientVouch{Subject: "alice", Provider: "claude-code", At: time.Now().UTC()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	status, out := ta.form(asrv.PathToken, id, secret, url.Values{"grant_type": {"client_credentials"}, "resource": {ta.resource}, "scope": {"jira:read"}})
	if desc, _ := out["error_description"].(string); status < 400 || out["access_token"] != nil || !strings.Contains(desc, "not attested") {
		t.Fatalf("client_credentials of a vouched client: %d %v", status, out)
	}
}
