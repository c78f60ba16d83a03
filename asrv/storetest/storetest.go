// Package storetest is the contract every asrv.Store must satisfy: the
// semantics fosite's handlers rely on (reuse detection, revocation by
// request id, error sentinels) plus the gateway's own (single-use access
// tokens, no secrets at rest, client deletion cascading to tokens).
//
// A store package runs it from a test:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) asrv.Store { return openFresh(t) })
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
)

// Run runs the contract suite. open must return a fresh, empty store for
// each call; Run closes it when the subtest ends. The expiry tests sleep
// about 2.2 s, since a store's clock cannot be injected through the
// interface.
func Run(t *testing.T, open func(t *testing.T) asrv.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Clients", testClients},
		{"TokenKinds", testTokenKinds},
		{"UnknownSignatures", testUnknownSignatures},
		{"TokenForUnknownClient", testTokenForUnknownClient},
		{"ReturnedRequestsAreCopies", testReturnedRequestsAreCopies},
		{"SensitiveFormKeysNotPersisted", testSensitiveFormKeys},
		{"AuthorizeCodeInvalidation", testAuthorizeCodeInvalidation},
		{"RefreshRotationAndReuse", testRefreshRotation},
		{"ConcurrentRefreshRotation", testConcurrentRotation},
		{"RefreshReuseWithinGrace", testRefreshReuseWithinGrace},
		{"RefreshReuseAfterGrace", testRefreshReuseAfterGrace},
		{"ConcurrentRefreshRotationWithinGrace", testConcurrentRotationWithinGrace},
		{"RefreshGraceEndsWithTheFamily", testRefreshGraceEndsWithTheFamily},
		{"RevokeByRequestID", testRevokeByRequestID},
		{"ConsumeAccessToken", testConsume},
		{"ConsumeAccessTokenConcurrent", testConsumeConcurrent},
		{"DeleteClientRemovesTokens", testDeleteClientRemovesTokens},
		{"PendingClients", testPendingClients},
		{"PendingClientRacingItsFirstToken", testPendingRace},
		{"MetadataDocumentClientSnapshot", testMetadataSnapshot},
		{"UpdateClient", testUpdateClient},
		{"UpdateClientConcurrent", testUpdateClientConcurrent},
		{"ReviewedClientsPending", testReviewedPending},
		{"DelegatedTokensDieWithTheirChain", testDelegatedChain},
		{"DelegatedFromASingleUseSubjectOnce", testDelegatedConsumeConcurrent},
		{"DelegationRacingRevocation", testDelegationRacingRevocation},
		{"DelegationRacingClientDeletion", testDelegationRacingClientDeletion},
		{"RevokeSubject", testRevokeSubject},
		{"RevokeSubjectRacingStores", testRevokeSubjectRacingStores},
		{"ClientAssertionJTI", testJTI},
		{"Expiry", testExpiry},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, &fixture{t: t, s: s, ctx: context.Background()})
		})
	}
}

type fixture struct {
	t   *testing.T
	s   asrv.Store
	ctx context.Context
}

// client registers a client with id.
func (f *fixture) client(id string) *asrv.Client {
	f.t.Helper()
	c := &asrv.Client{
		ID:                      id,
		SecretHash:              []byte("$2a$10$notarealhashnotarealhashnotarealhashnotarealhash"),
		RedirectURIs:            []string{"https://agent.example/cb"},
		GrantTypes:              []string{"authorization_code", "refresh_token", "client_credentials"},
		ResponseTypes:           []string{"code"},
		Scopes:                  []string{"tools:read", "tools:write", "offline"},
		Audience:                []string{"https://mcp.example"},
		TokenEndpointAuthMethod: asrv.AuthMethodSecretBasic,
		ApplicationType:         asrv.ApplicationTypeWeb,
		Name:                    "agent " + id,
		Agent:                   asrv.AgentClaims{Verified: true, Issuer: "https://vendor.example", AgentModel: "m1"},
		CreatedAt:               time.Now().UTC().Truncate(time.Second),
	}
	if err := f.s.CreateClient(f.ctx, c); err != nil {
		f.t.Fatalf("CreateClient(%q): %v", id, err)
	}
	return c
}

// request builds a request of client c with id reqID and a session expiring
// an hour from now for every token type.
func request(c *asrv.Client, reqID string) *fosite.Request {
	return requestAt(c, reqID, time.Now())
}

// requestAt is request made at now (to the second): requests a test
// compares with each other are made at one time, or a second turning
// between them would tell them apart.
func requestAt(c *asrv.Client, reqID string, now time.Time) *fosite.Request {
	now = now.UTC().Truncate(time.Second)
	sess := &asrv.Session{
		Subject:  "alice",
		Roles:    []string{"engineer"},
		ClientID: c.ID,
		Act:      &asrv.Actor{Sub: "planner", Act: &asrv.Actor{Sub: "root-agent"}},
		Tier:     "trusted",
	}
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode} {
		sess.SetExpiresAt(tt, now.Add(time.Hour))
	}
	return &fosite.Request{
		ID:                reqID,
		RequestedAt:       now,
		Client:            c,
		RequestedScope:    fosite.Arguments{"tools:read", "tools:write"},
		GrantedScope:      fosite.Arguments{"tools:read"},
		RequestedAudience: fosite.Arguments{"https://mcp.example"},
		GrantedAudience:   fosite.Arguments{"https://mcp.example"},
		Form: url.Values{
			"grant_type":   {"authorization_code"},
			"redirect_uri": {"https://agent.example/cb"},
			"scope":        {"tools:read tools:write"},
		},
		Session: sess,
	}
}

func sig() string { return rand.Text() + rand.Text() }

// kind is one kind of stored code or token.
type kind struct {
	name   string
	typ    fosite.TokenType
	create func(f *fixture, sig string, r fosite.Requester) error
	get    func(f *fixture, sig string, s fosite.Session) (fosite.Requester, error)
	del    func(f *fixture, sig string) error // nil: no delete operation
}

var kinds = []kind{
	{
		name: "authorize code", typ: fosite.AuthorizeCode,
		create: func(f *fixture, sig string, r fosite.Requester) error {
			return f.s.CreateAuthorizeCodeSession(f.ctx, sig, r)
		},
		get: func(f *fixture, sig string, s fosite.Session) (fosite.Requester, error) {
			return f.s.GetAuthorizeCodeSession(f.ctx, sig, s)
		},
	},
	{
		name: "pkce", typ: fosite.AuthorizeCode,
		create: func(f *fixture, sig string, r fosite.Requester) error {
			return f.s.CreatePKCERequestSession(f.ctx, sig, r)
		},
		get: func(f *fixture, sig string, s fosite.Session) (fosite.Requester, error) {
			return f.s.GetPKCERequestSession(f.ctx, sig, s)
		},
		del: func(f *fixture, sig string) error { return f.s.DeletePKCERequestSession(f.ctx, sig) },
	},
	{
		name: "access token", typ: fosite.AccessToken,
		create: func(f *fixture, sig string, r fosite.Requester) error {
			return f.s.CreateAccessTokenSession(f.ctx, sig, r)
		},
		get: func(f *fixture, sig string, s fosite.Session) (fosite.Requester, error) {
			return f.s.GetAccessTokenSession(f.ctx, sig, s)
		},
		del: func(f *fixture, sig string) error { return f.s.DeleteAccessTokenSession(f.ctx, sig) },
	},
	{
		name: "refresh token", typ: fosite.RefreshToken,
		create: func(f *fixture, sig string, r fosite.Requester) error {
			return f.s.CreateRefreshTokenSession(f.ctx, sig, "access-"+sig, r)
		},
		get: func(f *fixture, sig string, s fosite.Session) (fosite.Requester, error) {
			return f.s.GetRefreshTokenSession(f.ctx, sig, s)
		},
		del: func(f *fixture, sig string) error { return f.s.DeleteRefreshTokenSession(f.ctx, sig) },
	},
}

func (k kind) mustCreate(f *fixture, sig string, r fosite.Requester) {
	f.t.Helper()
	if err := k.create(f, sig, r); err != nil {
		f.t.Fatalf("create %s: %v", k.name, err)
	}
}

func (k kind) mustGet(f *fixture, sig string) fosite.Requester {
	f.t.Helper()
	r, err := k.get(f, sig, nil)
	if err != nil {
		f.t.Fatalf("get %s: %v", k.name, err)
	}
	return r
}

func (k kind) wantNotFound(f *fixture, sig string) {
	f.t.Helper()
	r, err := k.get(f, sig, nil)
	if !errors.Is(err, fosite.ErrNotFound) {
		f.t.Fatalf("get %s: got (%v, %v), want fosite.ErrNotFound", k.name, r, err)
	}
}

func kindByType(name string) kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	panic("storetest: no kind " + name)
}

var (
	accessKind  = kindByType("access token")
	refreshKind = kindByType("refresh token")
	codeKind    = kindByType("authorize code")
)

// checkRequest compares what a store returned with what was stored.
func checkRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("returned request is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	if !got.GetRequestedAt().Equal(want.RequestedAt) {
		t.Errorf("RequestedAt = %v, want %v", got.GetRequestedAt(), want.RequestedAt)
	}
	c, ok := got.GetClient().(*asrv.Client)
	if !ok {
		t.Fatalf("client is %T, want *asrv.Client", got.GetClient())
	}
	wc := want.Client.(*asrv.Client)
	if c.ID != wc.ID || !slices.Equal(c.Scopes, wc.Scopes) || c.Agent != wc.Agent {
		t.Errorf("client = %+v, want %+v", c, wc)
	}
	for _, a := range []struct {
		name      string
		got, want fosite.Arguments
	}{
		{"requested scope", got.GetRequestedScopes(), want.RequestedScope},
		{"granted scope", got.GetGrantedScopes(), want.GrantedScope},
		{"requested audience", got.GetRequestedAudience(), want.RequestedAudience},
		{"granted audience", got.GetGrantedAudience(), want.GrantedAudience},
	} {
		if !slices.Equal(a.got, a.want) {
			t.Errorf("%s = %q, want %q", a.name, a.got, a.want)
		}
	}
	if !reflect.DeepEqual(got.GetRequestForm(), want.Form) {
		t.Errorf("form = %v, want %v", got.GetRequestForm(), want.Form)
	}
	sess, ok := got.GetSession().(*asrv.Session)
	if !ok {
		t.Fatalf("session is %T, want *asrv.Session", got.GetSession())
	}
	ws := want.Session.(*asrv.Session)
	if sess.Subject != ws.Subject || sess.ClientID != ws.ClientID || sess.Tier != ws.Tier ||
		sess.SingleUse != ws.SingleUse || !slices.Equal(sess.Roles, ws.Roles) ||
		!reflect.DeepEqual(sess.Act, ws.Act) {
		t.Errorf("session = %+v, want %+v", sess, ws)
	}
	for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken, fosite.AuthorizeCode} {
		if g, w := sess.GetExpiresAt(tt), ws.GetExpiresAt(tt); !g.Equal(w) {
			t.Errorf("session expiry %s = %v, want %v", tt, g, w)
		}
	}
}

func testClients(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	if err := f.s.CreateClient(f.ctx, &asrv.Client{ID: "agent-1"}); !errors.Is(err, asrv.ErrClientExists) {
		t.Fatalf("duplicate CreateClient: %v, want ErrClientExists", err)
	}
	got, err := f.s.Client(f.ctx, "agent-1")
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("Client = %+v\nwant %+v", got, c)
	}
	fc, err := f.s.GetClient(f.ctx, "agent-1")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if _, ok := fc.(*asrv.Client); !ok || fc.GetID() != "agent-1" {
		t.Errorf("GetClient = %T %v", fc, fc)
	}
	for _, id := range []string{"nobody", "agent-", "agent-10", ""} {
		if _, err := f.s.Client(f.ctx, id); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("Client(%q) err = %v, want fosite.ErrNotFound", id, err)
		}
		if fc, err := f.s.GetClient(f.ctx, id); !errors.Is(err, fosite.ErrNotFound) || fc != nil {
			t.Errorf("GetClient(%q) = %v, %v; want nil, fosite.ErrNotFound", id, fc, err)
		}
	}
	f.client("agent-2")
	list, err := f.s.Clients(f.ctx)
	if err != nil {
		t.Fatalf("Clients: %v", err)
	}
	if len(list) != 2 || list[0].ID != "agent-1" || list[1].ID != "agent-2" {
		t.Errorf("Clients = %v, want agent-1, agent-2 in order", list)
	}
	if err := f.s.DeleteClient(f.ctx, "agent-1"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if list, _ := f.s.Clients(f.ctx); len(list) != 1 || list[0].ID != "agent-2" {
		t.Errorf("Clients after delete = %v, want agent-2", list)
	}
	if _, err := f.s.Client(f.ctx, "agent-1"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("Client after delete: %v, want fosite.ErrNotFound", err)
	}
	if _, err := f.s.Client(f.ctx, "agent-2"); err != nil {
		t.Errorf("other client after delete: %v", err)
	}
	if err := f.s.DeleteClient(f.ctx, "agent-1"); err != nil && !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("second DeleteClient: %v, want nil or fosite.ErrNotFound", err)
	}
	// The id is free again.
	f.client("agent-1")
}

func testTokenKinds(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	for _, k := range kinds {
		t.Run(strings.ReplaceAll(k.name, " ", "_"), func(t *testing.T) {
			f := &fixture{t: t, s: f.s, ctx: f.ctx}
			s := sig()
			want := request(c, "req-"+k.name)
			k.mustCreate(f, s, want)
			checkRequest(t, k.mustGet(f, s), want)

			// A session passed to Get does not change what is returned.
			other := &asrv.Session{Subject: "mallory"}
			got, err := k.get(f, s, other)
			if err != nil {
				t.Fatalf("get with session: %v", err)
			}
			checkRequest(t, got, want)

			// Another signature is another entry.
			s2 := sig()
			want2 := request(c, "req2-"+k.name)
			want2.Session.(*asrv.Session).Subject = "bob"
			k.mustCreate(f, s2, want2)
			checkRequest(t, k.mustGet(f, s2), want2)
			checkRequest(t, k.mustGet(f, s), want)

			if k.del == nil {
				return
			}
			if err := k.del(f, s); err != nil {
				t.Fatalf("delete: %v", err)
			}
			k.wantNotFound(f, s)
			checkRequest(t, k.mustGet(f, s2), want2)
			if err := k.del(f, s); err != nil {
				t.Errorf("deleting an absent %s: %v, want nil", k.name, err)
			}
		})
	}
}

func testUnknownSignatures(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	known := sig()
	for _, k := range kinds {
		k.mustCreate(f, known, request(c, "r-"+k.name))
	}
	for _, k := range kinds {
		for _, s := range []string{sig(), "", known[:10], known + "x", strings.Repeat("A", 70000)} {
			k.wantNotFound(f, s)
		}
	}
	if _, err := f.s.ConsumeAccessToken(f.ctx, sig()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("ConsumeAccessToken(unknown) = %v, want fosite.ErrNotFound", err)
	}
	if err := f.s.InvalidateAuthorizeCodeSession(f.ctx, sig()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("InvalidateAuthorizeCodeSession(unknown) = %v, want fosite.ErrNotFound", err)
	}
	if err := f.s.RotateRefreshToken(f.ctx, "r-refresh token", sig()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("RotateRefreshToken(unknown) = %v, want fosite.ErrNotFound", err)
	}
}

func testTokenForUnknownClient(t *testing.T, f *fixture) {
	ghost := &asrv.Client{ID: "ghost"}
	for _, k := range kinds {
		s := sig()
		if err := k.create(f, s, request(ghost, "r")); err == nil {
			t.Errorf("create %s for an unregistered client succeeded", k.name)
		}
		k.wantNotFound(f, s)
	}
}

func testReturnedRequestsAreCopies(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	s := sig()
	now := time.Now()
	want := requestAt(c, "r1", now)
	accessKind.mustCreate(f, s, want)

	// Changing the request after storing it does not change the store.
	want = requestAt(c, "r1", now)
	stored := requestAt(c, "r1", now)
	s2 := sig()
	accessKind.mustCreate(f, s2, stored)
	stored.Session.(*asrv.Session).Subject = "changed"
	stored.GrantedScope[0] = "changed"
	stored.Form.Set("scope", "changed")
	checkRequest(t, accessKind.mustGet(f, s2), want)

	// Changing a returned request does not change the store.
	got := accessKind.mustGet(f, s)
	got.GetSession().(*asrv.Session).Subject = "changed"
	got.GetSession().(*asrv.Session).Act.Sub = "changed"
	got.GetSession().SetExpiresAt(fosite.AccessToken, time.Now().Add(-time.Hour))
	got.GetGrantedScopes()[0] = "changed"
	got.GetRequestForm().Set("redirect_uri", "changed")
	checkRequest(t, accessKind.mustGet(f, s), want)
}

// sensitive are request parameters that carry secrets or raw tokens.
var sensitive = map[string]string{
	"client_secret":    "CLIENTSECRET-5f1c2",
	"code_verifier":    "VERIFIER-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7",
	"password":         "PASSWORD-71ce",
	"assertion":        "ASSERTION-eyJhbGciOi",
	"client_assertion": "CLIENTASSERTION-eyJhbGciOi",
	"refresh_token":    "REFRESHTOKEN-ory_rt_x.y",
	"access_token":     "ACCESSTOKEN-ory_at_x.y",
	"code":             "AUTHCODE-ory_ac_x.y",
	"subject_token":    "SUBJECTTOKEN-ory_at_s.t",
	"actor_token":      "ACTORTOKEN-ory_at_a.t",
	"x-unknown-param":  "UNKNOWNPARAM-value",
}

// SensitiveForm returns a form carrying every sensitive parameter plus the
// parameters fosite reads back from stored requests. Store tests may use it
// to check raw storage bytes; SensitiveValues lists what must never appear.
func SensitiveForm() url.Values {
	form := url.Values{
		"grant_type":            {"authorization_code"},
		"redirect_uri":          {"https://agent.example/cb"},
		"scope":                 {"tools:read"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
		"resource":              {"https://mcp.example"},
		"state":                 {"st-123"},
	}
	for k, v := range sensitive {
		form.Set(k, v)
	}
	return form
}

// SensitiveValues are the values of SensitiveForm that must never be
// persisted.
func SensitiveValues() []string {
	var vs []string
	for _, v := range sensitive {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

func testSensitiveFormKeys(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	for _, k := range kinds {
		s := sig()
		r := request(c, "r-"+k.name)
		r.Form = SensitiveForm()
		k.mustCreate(f, s, r)
		got := k.mustGet(f, s)
		form := got.GetRequestForm()
		for key, v := range sensitive {
			if form.Has(key) {
				t.Errorf("%s: form kept %q", k.name, key)
			}
			if strings.Contains(fmt.Sprintf("%v", form), v) {
				t.Errorf("%s: form contains the value of %q", k.name, key)
			}
		}
		// What fosite's handlers read back must survive.
		for _, key := range []string{"redirect_uri", "code_challenge", "code_challenge_method", "grant_type", "scope"} {
			if form.Get(key) != r.Form.Get(key) {
				t.Errorf("%s: form[%q] = %q, want %q", k.name, key, form.Get(key), r.Form.Get(key))
			}
		}
	}
}

func testAuthorizeCodeInvalidation(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	s := sig()
	want := request(c, "r1")
	codeKind.mustCreate(f, s, want)
	if err := f.s.InvalidateAuthorizeCodeSession(f.ctx, s); err != nil {
		t.Fatalf("InvalidateAuthorizeCodeSession: %v", err)
	}
	// fosite needs the request with the error, to revoke the grant's tokens.
	got, err := f.s.GetAuthorizeCodeSession(f.ctx, s, nil)
	if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Fatalf("Get invalidated code: err = %v, want fosite.ErrInvalidatedAuthorizeCode", err)
	}
	checkRequest(t, got, want)
	// A second redemption must not succeed.
	if err := f.s.InvalidateAuthorizeCodeSession(f.ctx, s); err == nil {
		t.Error("invalidating an invalidated code succeeded")
	}
	// Concurrent redemptions of a fresh code: exactly one invalidation wins.
	s2 := sig()
	codeKind.mustCreate(f, s2, request(c, "r2"))
	if n := concurrently(20, func() error { return f.s.InvalidateAuthorizeCodeSession(f.ctx, s2) }); n != 1 {
		t.Errorf("%d concurrent invalidations succeeded, want 1", n)
	}
}

// concurrently runs fn n times at once and returns how many returned nil.
func concurrently(n int, fn func() error) int {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		ok    int
	)
	for range n {
		wg.Go(func() {
			<-start
			if fn() == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	return ok
}

func testRefreshRotation(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	req := request(c, "family-1")
	at1, rt1 := sig(), sig()
	accessKind.mustCreate(f, at1, req)
	refreshKind.mustCreate(f, rt1, req)
	// An unrelated grant is never touched.
	otherAT, otherRT := sig(), sig()
	accessKind.mustCreate(f, otherAT, request(c, "family-2"))
	refreshKind.mustCreate(f, otherRT, request(c, "family-2"))

	if err := f.s.RotateRefreshToken(f.ctx, "family-1", rt1); err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	got, err := f.s.GetRefreshTokenSession(f.ctx, rt1, nil)
	if !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("rotated refresh token: err = %v, want fosite.ErrInactiveToken", err)
	}
	checkRequest(t, got, req) // fosite needs the request to revoke the family
	accessKind.wantNotFound(f, at1)

	// fosite stores the new pair under the same request id.
	at2, rt2 := sig(), sig()
	accessKind.mustCreate(f, at2, req)
	refreshKind.mustCreate(f, rt2, req)
	checkRequest(t, refreshKind.mustGet(f, rt2), req)
	if err := f.s.RotateRefreshToken(f.ctx, "family-1", rt1); err == nil {
		t.Error("rotating an already rotated refresh token succeeded")
	}

	// Reuse of rt1: fosite deletes it and revokes the family.
	if err := f.s.DeleteRefreshTokenSession(f.ctx, rt1); err != nil {
		t.Fatalf("DeleteRefreshTokenSession: %v", err)
	}
	if err := f.s.RevokeRefreshToken(f.ctx, "family-1"); err != nil {
		t.Fatalf("RevokeRefreshToken: %v", err)
	}
	if err := f.s.RevokeAccessToken(f.ctx, "family-1"); err != nil {
		t.Fatalf("RevokeAccessToken: %v", err)
	}
	refreshKind.wantNotFound(f, rt1)
	if _, err := f.s.GetRefreshTokenSession(f.ctx, rt2, nil); !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("refresh token of a revoked family: err = %v, want inactive or not found", err)
	}
	accessKind.wantNotFound(f, at2)

	accessKind.mustGet(f, otherAT)
	refreshKind.mustGet(f, otherRT)
}

func testConcurrentRotation(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	rt := sig()
	refreshKind.mustCreate(f, rt, request(c, "fam"))
	if n := concurrently(20, func() error { return f.s.RotateRefreshToken(f.ctx, "fam", rt) }); n != 1 {
		t.Errorf("%d concurrent rotations of one refresh token succeeded, want 1", n)
	}
}

func testRevokeByRequestID(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	r1, r2 := request(c, "req-1"), request(c, "req-1x") // r2's id extends r1's
	a1, a2, a3 := sig(), sig(), sig()
	f1, f2 := sig(), sig()
	accessKind.mustCreate(f, a1, r1)
	accessKind.mustCreate(f, a2, r1)
	refreshKind.mustCreate(f, f1, r1)
	accessKind.mustCreate(f, a3, r2)
	refreshKind.mustCreate(f, f2, r2)

	if err := f.s.RevokeAccessToken(f.ctx, "req-1"); err != nil {
		t.Fatalf("RevokeAccessToken: %v", err)
	}
	accessKind.wantNotFound(f, a1)
	accessKind.wantNotFound(f, a2)
	refreshKind.mustGet(f, f1) // access revocation leaves refresh tokens
	accessKind.mustGet(f, a3)

	if err := f.s.RevokeRefreshToken(f.ctx, "req-1"); err != nil {
		t.Fatalf("RevokeRefreshToken: %v", err)
	}
	if _, err := f.s.GetRefreshTokenSession(f.ctx, f1, nil); !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("revoked refresh token: err = %v, want inactive or not found", err)
	}
	refreshKind.mustGet(f, f2)
	accessKind.mustGet(f, a3)

	for _, id := range []string{"no-such-request", "req-", ""} {
		if err := f.s.RevokeAccessToken(f.ctx, id); err != nil {
			t.Errorf("RevokeAccessToken(%q) = %v, want nil", id, err)
		}
		if err := f.s.RevokeRefreshToken(f.ctx, id); err != nil {
			t.Errorf("RevokeRefreshToken(%q) = %v, want nil", id, err)
		}
	}
	refreshKind.mustGet(f, f2)
	accessKind.mustGet(f, a3)
}

func testConsume(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	s := sig()
	want := request(c, "r1")
	want.Session.(*asrv.Session).SingleUse = true
	accessKind.mustCreate(f, s, want)
	got, err := f.s.ConsumeAccessToken(f.ctx, s)
	if err != nil {
		t.Fatalf("ConsumeAccessToken: %v", err)
	}
	checkRequest(t, got, want)
	accessKind.wantNotFound(f, s)
	if _, err := f.s.ConsumeAccessToken(f.ctx, s); !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, asrv.ErrConsumed) {
		t.Errorf("second ConsumeAccessToken = %v, want ErrConsumed or fosite.ErrNotFound", err)
	}
}

func testConsumeConcurrent(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	for round := range 3 {
		s := sig()
		want := request(c, fmt.Sprintf("r%d", round))
		accessKind.mustCreate(f, s, want)
		var (
			mu      sync.Mutex
			winners []fosite.Requester
			badErrs []error
		)
		concurrently(50, func() error {
			r, err := f.s.ConsumeAccessToken(f.ctx, s)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, r)
			case errors.Is(err, asrv.ErrConsumed), errors.Is(err, fosite.ErrNotFound):
			default:
				badErrs = append(badErrs, err)
			}
			return err
		})
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of 50 concurrent consumers succeeded, want exactly 1", round, len(winners))
		}
		checkRequest(t, winners[0], want)
		for _, err := range badErrs {
			t.Errorf("round %d: loser got %v, want ErrConsumed or fosite.ErrNotFound", round, err)
		}
		accessKind.wantNotFound(f, s)
	}
}

func testDeleteClientRemovesTokens(t *testing.T, f *fixture) {
	a := f.client("agent-a")
	b := f.client("agent-b")
	f.client("agent-a2") // an id extending a's
	type tok struct {
		k   kind
		sig string
	}
	var aToks, bToks []tok
	for i := range 3 {
		for _, k := range kinds {
			s := sig()
			k.mustCreate(f, s, request(a, fmt.Sprintf("ra-%d", i)))
			aToks = append(aToks, tok{k, s})
			s = sig()
			k.mustCreate(f, s, request(b, fmt.Sprintf("rb-%d", i)))
			bToks = append(bToks, tok{k, s})
		}
	}
	if err := f.s.DeleteClient(f.ctx, "agent-a"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	for _, tk := range aToks {
		tk.k.wantNotFound(f, tk.sig)
	}
	for _, tk := range bToks {
		tk.k.mustGet(f, tk.sig)
	}
	// Registering the id again does not bring the old tokens back.
	f.client("agent-a")
	for _, tk := range aToks {
		tk.k.wantNotFound(f, tk.sig)
	}
	if _, err := f.s.ConsumeAccessToken(f.ctx, aToks[2].sig); err == nil {
		t.Error("consumed an access token of a deleted client")
	}
}

func testJTI(t *testing.T, f *fixture) {
	exp := time.Now().Add(time.Hour)
	if err := f.s.ClientAssertionJWTValid(f.ctx, "jti-1"); err != nil {
		t.Fatalf("unknown jti: %v, want nil", err)
	}
	if err := f.s.SetClientAssertionJWT(f.ctx, "jti-1", exp); err != nil {
		t.Fatalf("SetClientAssertionJWT: %v", err)
	}
	if err := f.s.ClientAssertionJWTValid(f.ctx, "jti-1"); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("known jti: %v, want fosite.ErrJTIKnown", err)
	}
	if err := f.s.SetClientAssertionJWT(f.ctx, "jti-1", exp); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("recording a known jti: %v, want fosite.ErrJTIKnown", err)
	}
	if err := f.s.ClientAssertionJWTValid(f.ctx, "jti-2"); err != nil {
		t.Errorf("other jti: %v, want nil", err)
	}
	long := strings.Repeat("j", 100000)
	if err := f.s.SetClientAssertionJWT(f.ctx, long, exp); err != nil {
		t.Errorf("long jti: %v", err)
	}
	if err := f.s.ClientAssertionJWTValid(f.ctx, long); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("long known jti: %v, want fosite.ErrJTIKnown", err)
	}
	if n := concurrently(20, func() error { return f.s.SetClientAssertionJWT(f.ctx, "jti-race", exp) }); n != 1 {
		t.Errorf("%d concurrent recordings of one jti succeeded, want 1", n)
	}
}

func testExpiry(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	soon := time.Now().Add(2 * time.Second)
	type tok struct {
		k   kind
		sig string
	}
	var short, long, past []tok
	for _, k := range kinds {
		r := request(c, "short-"+k.name)
		r.Session.(*asrv.Session).SetExpiresAt(k.typ, soon)
		s := sig()
		k.mustCreate(f, s, r)
		short = append(short, tok{k, s})

		s = sig()
		k.mustCreate(f, s, request(c, "long-"+k.name))
		long = append(long, tok{k, s})

		r = request(c, "past-"+k.name)
		r.Session.(*asrv.Session).SetExpiresAt(k.typ, time.Now().Add(-time.Minute))
		s = sig()
		if err := k.create(f, s, r); err == nil {
			k.wantNotFound(f, s)
		}
		past = append(past, tok{k, s})
	}
	// No expiry at all: lives until deleted.
	noExp := request(c, "no-expiry")
	noExp.Session.(*asrv.Session).ExpiresAt = nil
	noExpSig := sig()
	accessKind.mustCreate(f, noExpSig, noExp)

	if err := f.s.SetClientAssertionJWT(f.ctx, "jti-soon", soon); err != nil {
		t.Fatalf("SetClientAssertionJWT: %v", err)
	}
	// Before their expiry the short-lived ones are there — when the machine
	// was quick enough to leave time to look (a loaded CI runner may not).
	if time.Until(soon) > 500*time.Millisecond {
		for _, tk := range short {
			tk.k.mustGet(f, tk.sig)
		}
	} else {
		t.Logf("creating the tokens took until %v before their expiry: the reads before it are skipped", time.Until(soon))
	}

	time.Sleep(time.Until(soon) + 200*time.Millisecond)

	for _, tk := range short {
		tk.k.wantNotFound(f, tk.sig)
	}
	for _, tk := range long {
		tk.k.mustGet(f, tk.sig)
	}
	for _, tk := range past {
		tk.k.wantNotFound(f, tk.sig)
	}
	accessKind.mustGet(f, noExpSig)
	if _, err := f.s.ConsumeAccessToken(f.ctx, short[slices.IndexFunc(short, func(x tok) bool { return x.k.name == accessKind.name })].sig); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("consuming an expired access token: %v, want fosite.ErrNotFound", err)
	}
	if err := f.s.ClientAssertionJWTValid(f.ctx, "jti-soon"); err != nil {
		t.Errorf("expired jti: %v, want nil", err)
	}
	if err := f.s.SetClientAssertionJWT(f.ctx, "jti-soon", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("recording an expired jti again: %v", err)
	}
}

// testPing: an open store answers; a closed one does not.
func testPing(t *testing.T, f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		t.Fatalf("Ping on an open store: %v", err)
	}
	if err := f.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.s.Ping(f.ctx); err == nil {
		t.Fatal("Ping on a closed store succeeded")
	}
}

// delegated builds the request of an access token that client c got by
// exchanging a token of act's chain, with its own request id.
func delegated(c *asrv.Client, reqID string, act *asrv.Actor) *fosite.Request {
	r := request(c, reqID)
	r.Session.(*asrv.Session).Act = act
	return r
}

func (f *fixture) mustDelegate(sig string, r fosite.Requester, subjectSig string, consume bool) {
	f.t.Helper()
	if err := f.s.CreateDelegatedAccessToken(f.ctx, sig, r, subjectSig, consume); err != nil {
		f.t.Fatalf("CreateDelegatedAccessToken: %v", err)
	}
}

// testDelegatedChain: a delegated token dies when any grant it descends
// from is revoked (access or refresh side) or any client of its chain is
// deleted, at any depth; it survives a refresh of its subject's grant and
// the consumption of a single-use subject; and it cannot be created from a
// subject token that is gone.
func testDelegatedChain(t *testing.T, f *fixture) {
	a, b, c := f.client("agent-a"), f.client("agent-b"), f.client("agent-c")
	// chain builds: root (a's grant "root", access + refresh token), child
	// (b's, delegated from root), grandchild (c's, delegated from child).
	type chain struct{ root, rootRT, child, grandchild string }
	build := func(t *testing.T, tag string) chain {
		f := &fixture{t: t, s: f.s, ctx: f.ctx}
		ch := chain{root: sig(), rootRT: sig(), child: sig(), grandchild: sig()}
		accessKind.mustCreate(f, ch.root, request(a, "root-"+tag))
		refreshKind.mustCreate(f, ch.rootRT, request(a, "root-"+tag))
		// The stored request and the wanted one are built alike, so both
		// carry the same expiry (request truncates now to the second).
		child, want := delegated(b, "child-"+tag, &asrv.Actor{Sub: a.ID}), delegated(b, "child-"+tag, &asrv.Actor{Sub: a.ID})
		for want.RequestedAt != child.RequestedAt {
			child, want = delegated(b, "child-"+tag, &asrv.Actor{Sub: a.ID}), delegated(b, "child-"+tag, &asrv.Actor{Sub: a.ID})
		}
		f.mustDelegate(ch.child, child, ch.root, false)
		f.mustDelegate(ch.grandchild, delegated(c, "grandchild-"+tag, &asrv.Actor{Sub: b.ID, Act: &asrv.Actor{Sub: a.ID}}), ch.child, false)
		checkRequest(t, accessKind.mustGet(f, ch.child), want)
		accessKind.mustGet(f, ch.grandchild)
		return ch
	}
	for _, tc := range []struct {
		name string
		act  func(f *fixture, tag string, ch chain) error
		// which survive: root, child, grandchild
		root, child, grandchild bool
	}{
		{"revoking the root grant's access tokens", func(f *fixture, tag string, _ chain) error {
			return f.s.RevokeAccessToken(f.ctx, "root-"+tag)
		}, false, false, false},
		{"revoking the root grant's refresh tokens", func(f *fixture, tag string, _ chain) error {
			return f.s.RevokeRefreshToken(f.ctx, "root-"+tag)
		}, true, false, false},
		{"revoking the child's grant", func(f *fixture, tag string, _ chain) error {
			return f.s.RevokeAccessToken(f.ctx, "child-"+tag)
		}, true, false, false},
		{"revoking the grandchild's grant", func(f *fixture, tag string, _ chain) error {
			return f.s.RevokeAccessToken(f.ctx, "grandchild-"+tag)
		}, true, true, false},
		{"rotating the root's refresh token", func(f *fixture, tag string, ch chain) error {
			return f.s.RotateRefreshToken(f.ctx, "root-"+tag, ch.rootRT)
		}, false, true, true},
		{"consuming the root", func(f *fixture, _ string, ch chain) error {
			_, err := f.s.ConsumeAccessToken(f.ctx, ch.root)
			return err
		}, false, true, true},
		{"revoking another grant", func(f *fixture, _ string, _ chain) error {
			return f.s.RevokeAccessToken(f.ctx, "root-other")
		}, true, true, true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			f := &fixture{t: t, s: f.s, ctx: f.ctx}
			tag := strings.ReplaceAll(tc.name, " ", "-")
			ch := build(t, tag)
			if err := tc.act(f, tag, ch); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []struct {
				name, sig string
				live      bool
			}{{"root", ch.root, tc.root}, {"child", ch.child, tc.child}, {"grandchild", ch.grandchild, tc.grandchild}} {
				_, err := f.s.GetAccessTokenSession(f.ctx, tok.sig, nil)
				if tok.live && err != nil {
					t.Errorf("%s: %v, want it live", tok.name, err)
				}
				if !tok.live && !errors.Is(err, fosite.ErrNotFound) {
					t.Errorf("%s: err = %v, want fosite.ErrNotFound", tok.name, err)
				}
			}
		})
	}

	t.Run("deleting_a_client_of_the_chain", func(t *testing.T) {
		f := &fixture{t: t, s: f.s, ctx: f.ctx}
		ch := build(t, "delete-b")
		if err := f.s.DeleteClient(f.ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		accessKind.mustGet(f, ch.root)
		accessKind.wantNotFound(f, ch.child)      // b's own
		accessKind.wantNotFound(f, ch.grandchild) // c's, delegated by b
		if _, err := f.s.ConsumeAccessToken(f.ctx, ch.grandchild); err == nil {
			t.Error("consumed a token delegated by a deleted client")
		}
		f.client("agent-b") // the id registered again brings nothing back
		accessKind.wantNotFound(f, ch.grandchild)
		b = f.client("agent-b2")
	})
	t.Run("deleting_the_root_client", func(t *testing.T) {
		f := &fixture{t: t, s: f.s, ctx: f.ctx}
		root, child := sig(), sig()
		accessKind.mustCreate(f, root, request(c, "root-c"))
		f.mustDelegate(child, delegated(a, "child-of-c", &asrv.Actor{Sub: c.ID}), root, true) // the root is consumed
		accessKind.wantNotFound(f, root)
		accessKind.mustGet(f, child)
		if err := f.s.DeleteClient(f.ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		accessKind.wantNotFound(f, child)
	})
	t.Run("no_subject_no_delegation", func(t *testing.T) {
		f := &fixture{t: t, s: f.s, ctx: f.ctx}
		gone, child := sig(), sig()
		for _, subj := range []string{gone, "", strings.Repeat("x", 70000)} {
			err := f.s.CreateDelegatedAccessToken(f.ctx, child, delegated(a, "orphan", &asrv.Actor{Sub: a.ID}), subj, false)
			if !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, asrv.ErrConsumed) {
				t.Errorf("delegating from subject %.10q: %v, want fosite.ErrNotFound", subj, err)
			}
			accessKind.wantNotFound(f, child)
		}
		// Nor for a client that is not registered.
		root := sig()
		accessKind.mustCreate(f, root, request(a, "root-ghost"))
		if err := f.s.CreateDelegatedAccessToken(f.ctx, child, delegated(&asrv.Client{ID: "ghost"}, "to-ghost", &asrv.Actor{Sub: a.ID}), root, true); err == nil {
			t.Error("delegated to an unregistered client")
		}
		accessKind.mustGet(f, root) // nothing happened: the root is not consumed
	})
}

// testDelegatedConsumeConcurrent: of concurrent exchanges of one
// single-use subject token, exactly one stores its token.
func testDelegatedConsumeConcurrent(t *testing.T, f *fixture) {
	a, b := f.client("agent-a"), f.client("agent-b")
	for round := range 3 {
		root := sig()
		accessKind.mustCreate(f, root, request(a, fmt.Sprintf("root-%d", round)))
		var (
			mu       sync.Mutex
			children []string
			bad      []error
		)
		concurrently(30, func() error {
			child := sig()
			err := f.s.CreateDelegatedAccessToken(f.ctx, child, delegated(b, "child-"+child, &asrv.Actor{Sub: a.ID}), root, true)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				children = append(children, child)
			case errors.Is(err, asrv.ErrConsumed), errors.Is(err, fosite.ErrNotFound):
			default:
				bad = append(bad, err)
			}
			return err
		})
		if len(children) != 1 {
			t.Fatalf("round %d: %d of 30 concurrent exchanges of one single-use subject succeeded, want 1", round, len(children))
		}
		for _, err := range bad {
			t.Errorf("round %d: loser got %v, want ErrConsumed or fosite.ErrNotFound", round, err)
		}
		accessKind.wantNotFound(f, root)
		accessKind.mustGet(f, children[0])
	}
}

// testDelegationRacingRevocation: an exchange and a revocation of its
// subject's grant at the same moment never leave a delegated token alive.
func testDelegationRacingRevocation(t *testing.T, f *fixture) {
	a, b := f.client("agent-a"), f.client("agent-b")
	created := 0
	for round := range 40 {
		root, child := sig(), sig()
		grant := fmt.Sprintf("root-%d", round)
		accessKind.mustCreate(f, root, request(a, grant))
		start := make(chan struct{})
		var wg sync.WaitGroup
		var createErr, revokeErr error
		wg.Go(func() {
			<-start
			createErr = f.s.CreateDelegatedAccessToken(f.ctx, child, delegated(b, "child-"+grant, &asrv.Actor{Sub: a.ID}), root, round%2 == 0)
		})
		wg.Go(func() {
			<-start
			revokeErr = f.s.RevokeAccessToken(f.ctx, grant)
		})
		close(start)
		wg.Wait()
		if revokeErr != nil {
			t.Fatalf("round %d: revoke: %v", round, revokeErr)
		}
		if createErr == nil {
			created++
		}
		if _, err := f.s.GetAccessTokenSession(f.ctx, child, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Fatalf("round %d: the delegated token outlived the revocation of its subject's grant (create: %v): %v", round, createErr, err)
		}
	}
	t.Logf("%d of 40 delegations got in before the revocation (and were removed by it)", created)
}

// testDelegationRacingClientDeletion: an exchange and the deletion of its
// delegating client at the same moment never leave a delegated token
// alive.
func testDelegationRacingClientDeletion(t *testing.T, f *fixture) {
	b := f.client("agent-b")
	for round := range 20 {
		a := f.client(fmt.Sprintf("agent-a-%d", round))
		root, child := sig(), sig()
		accessKind.mustCreate(f, root, request(a, fmt.Sprintf("root-%d", round)))
		start := make(chan struct{})
		var wg sync.WaitGroup
		var createErr, deleteErr error
		wg.Go(func() {
			<-start
			createErr = f.s.CreateDelegatedAccessToken(f.ctx, child, delegated(b, fmt.Sprintf("child-%d", round), &asrv.Actor{Sub: a.ID}), root, false)
		})
		wg.Go(func() {
			<-start
			deleteErr = f.s.DeleteClient(f.ctx, a.ID)
		})
		close(start)
		wg.Wait()
		if deleteErr != nil {
			t.Fatalf("round %d: delete: %v", round, deleteErr)
		}
		if _, err := f.s.GetAccessTokenSession(f.ctx, child, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Fatalf("round %d: the delegated token outlived its delegating client (create: %v): %v", round, createErr, err)
		}
	}
}

// unverified registers a client without a trusted statement, registered
// at at.
func (f *fixture) unverified(id string, at time.Time) *asrv.Client {
	f.t.Helper()
	c := &asrv.Client{ID: id, RedirectURIs: []string{"http://127.0.0.1/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone, CreatedAt: at.UTC().Truncate(time.Second)}
	if err := f.s.CreateClient(f.ctx, c); err != nil {
		f.t.Fatalf("CreateClient(%q): %v", id, err)
	}
	return c
}

func (f *fixture) wantCounts(total, pending int) {
	f.t.Helper()
	gt, gp, err := f.s.CountClients(f.ctx)
	if err != nil || gt != total || gp != pending {
		f.t.Fatalf("CountClients = %d, %d, %v; want %d, %d", gt, gp, err, total, pending)
	}
}

// testMetadataSnapshot: the snapshot the AS stores of a client ID metadata
// document's client (its id an https URL, unverified, with an attestation
// of kind cimd) reads back as stored, attestation included, and is pending
// until its first code, like any unverified client.
func testMetadataSnapshot(t *testing.T, f *fixture) {
	const id = "https://agent.example/oauth/client-metadata.json?v=1"
	c := &asrv.Client{ID: id, RedirectURIs: []string{"http://localhost/callback"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: asrv.AuthMethodNone, Name: "Agent",
		Attestation: &contract.Attestation{Kind: asrv.AttestationCIMD, Origin: "https://agent.example"},
		CreatedAt:   time.Now().UTC().Truncate(time.Second)}
	if err := f.s.CreateClient(f.ctx, c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	f.wantCounts(1, 1)
	got, err := f.s.Client(f.ctx, id)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("Client = %+v (attestation %+v)\nwant %+v", got, got.Attestation, c)
	}
	codeKind.mustCreate(f, sig(), request(c, "first-code"))
	f.wantCounts(1, 0)
}

// testPendingClients: an unverified client is pending until its first code
// or token (of any kind, delegated ones too); pending clients are counted
// apart; DeletePendingClients deletes the pending ones registered before
// the cutoff and nothing else.
func testPendingClients(t *testing.T, f *fixture) {
	old := time.Now().Add(-48 * time.Hour)
	f.wantCounts(0, 0)
	verified := f.client("verified")
	f.wantCounts(1, 0)
	for _, k := range kinds {
		c := f.unverified("used-by-"+strings.ReplaceAll(k.name, " ", "-"), old)
		k.mustCreate(f, sig(), request(c, "r-"+c.ID))
	}
	f.wantCounts(1+len(kinds), 0)
	target := f.unverified("delegated-to", old)
	root := sig()
	accessKind.mustCreate(f, root, request(verified, "root"))
	f.wantCounts(2+len(kinds), 1)
	f.mustDelegate(sig(), delegated(target, "to-target", &asrv.Actor{Sub: verified.ID}), root, false)
	f.wantCounts(2+len(kinds), 0)

	f.unverified("stale-1", old)
	f.unverified("stale-2", old)
	f.unverified("fresh", time.Now())
	f.wantCounts(5+len(kinds), 3)
	n, err := f.s.DeletePendingClients(f.ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("DeletePendingClients = %d, %v; want 2", n, err)
	}
	f.wantCounts(3+len(kinds), 1)
	for _, id := range []string{"stale-1", "stale-2"} {
		if _, err := f.s.Client(f.ctx, id); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("pending client %s survived: %v", id, err)
		}
	}
	for _, id := range []string{"verified", "fresh", "delegated-to", "used-by-access-token"} {
		if _, err := f.s.Client(f.ctx, id); err != nil {
			t.Errorf("client %s was deleted: %v", id, err)
		}
	}
	if err := f.s.DeleteClient(f.ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	f.wantCounts(2+len(kinds), 0)
}

// testPendingRace: a pending client's first token and the deletion of
// pending clients at the same moment: if the token was issued, the client
// is still there.
func testPendingRace(t *testing.T, f *fixture) {
	old := time.Now().Add(-48 * time.Hour)
	kept := 0
	for round := range 30 {
		c := f.unverified(fmt.Sprintf("racer-%d", round), old)
		tok := sig()
		start := make(chan struct{})
		var wg sync.WaitGroup
		var createErr, sweepErr error
		wg.Go(func() {
			<-start
			createErr = f.s.CreateAccessTokenSession(f.ctx, tok, request(c, "r"))
		})
		wg.Go(func() {
			<-start
			_, sweepErr = f.s.DeletePendingClients(f.ctx, time.Now())
		})
		close(start)
		wg.Wait()
		if sweepErr != nil {
			t.Fatalf("round %d: %v", round, sweepErr)
		}
		_, clientErr := f.s.Client(f.ctx, c.ID)
		if createErr == nil {
			kept++
			if clientErr != nil {
				t.Fatalf("round %d: a client that got its token was deleted as never used: %v", round, clientErr)
			}
			accessKind.mustGet(f, tok)
		} else {
			accessKind.wantNotFound(f, tok)
		}
	}
	t.Logf("%d of 30 clients got their token before the sweep", kept)
}
