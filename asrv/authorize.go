package asrv

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/contract"
)

const csrfCookie = "pbac_authz_csrf"

// issWriter adds RFC 9207's iss parameter to every redirect back to the
// client (a code or an error), so a client talking to several authorization
// servers can tell which one answered (mix-up defense, RFC 9700 §4.4).
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w issWriter) WriteHeader(code int) {
	if code >= 300 && code < 400 {
		if u, err := url.Parse(w.Header().Get("Location")); err == nil && u.Scheme != "" {
			q := u.Query()
			q.Set("iss", w.iss)
			u.RawQuery = q.Encode()
			w.Header().Set("Location", u.String())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// refuseRejected answers the authorization request of a client an operator
// rejected with a page saying so (never a redirect to the client) and
// records the refusal; it reports whether the client was rejected.
func (s *Server) refuseRejected(ctx context.Context, w http.ResponseWriter, r *http.Request, client *Client) bool {
	if !client.Rejected() {
		return false
	}
	s.log.InfoContext(ctx, "authorization refused: the client was rejected by an operator", "client_id", client.ID)
	s.event(ctx, *s.forClient(&Event{Kind: EventAuthorization, Action: "authorize", Error: "access_denied",
		Reason: "the client was rejected by an operator", Status: http.StatusForbidden, Remote: remoteHost(r)}, client))
	s.renderError(w, http.StatusForbidden, "access_denied", rejectedPage(client.ID))
	return true
}

func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	browser := w // for the redirect to the identity provider, which is not an answer to the client
	w = issWriter{ResponseWriter: w, iss: s.cfg.Issuer}
	ctx := r.Context()
	ar, client, resources, ok := s.authorizeRequest(ctx, w, r)
	if !ok {
		return
	}
	if s.refuseRejected(ctx, w, r, client) {
		return
	}
	// Who is asking, as policy sees it before anyone signs in: a client
	// policy refuses whoever signs in is told so now, never after a
	// password.
	p, err := s.preflight(ctx, client, ar, resources)
	if err != nil {
		s.authorizeError(ctx, w, ar, policyError(err))
		return
	}
	if len(p.refused) > 0 {
		s.log.InfoContext(ctx, "authorization refused before sign-in", "client_id", client.ID, "tier", p.tier, "reasons", p.refused)
		if r.Method == http.MethodGet {
			s.event(ctx, *s.forClient((&Event{Kind: EventAuthorization, Action: "authorize", Tier: p.tier,
				PolicyVersion: p.version, Remote: remoteHost(r)}).refusal(p.refusal()), client))
			s.renderRefusal(ctx, w, p)
			return
		}
		s.refuseAuthorization(ctx, w, ar, p.refusal(), Event{Tier: p.tier, PolicyVersion: p.version, Remote: remoteHost(r)})
		return
	}
	if r.Method == http.MethodGet {
		s.renderLogin(w, r, p, "", "", http.StatusOK)
		return
	}
	username := r.PostForm.Get("username")
	if err := s.checkSignInForm(r); err != nil {
		if !errors.Is(err, signin.ErrFormInvalid) && !errors.Is(err, signin.ErrFormExpired) {
			s.log.ErrorContext(ctx, "sign-in form check failed", "err", err)
		}
		s.renderLogin(w, r, p, username, "Your sign-in form expired; please try again.", http.StatusForbidden)
		return
	}
	switch d := r.PostForm.Get("decision"); {
	case d == "sso" && s.sso != nil:
		s.startSSO(ctx, browser, w, r, p)
		return
	case d != "approve":
		s.authorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	case s.users == nil:
		s.renderLogin(w, r, p, username, "Signing in with a password is not available here.", http.StatusBadRequest)
		return
	}
	attempt, err := s.signIn.Begin(ctx, signin.Attempt{Surface: "authorize", Username: username, RemoteAddr: r.RemoteAddr})
	var throttled *signin.ThrottledError
	if errors.As(err, &throttled) {
		wait := max(time.Second, throttled.RetryAfter.Round(time.Second))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		s.renderLogin(w, r, p, username, fmt.Sprintf("Too many failed sign-in attempts: try again in %s.", wait), http.StatusTooManyRequests)
		return
	}
	user, err := s.users.Authenticate(ctx, username, r.PostForm.Get("password"))
	attempt.Done(ctx, err == nil)
	if err != nil {
		s.renderLogin(w, r, p, username, "Unknown user or wrong password.", http.StatusUnauthorized)
		return
	}
	client, vouch, err := s.proposeVouch(ctx, client, user, r.PostForm.Get("vouch"))
	if err != nil {
		s.authorizeError(ctx, w, ar, err)
		return
	}
	s.grantAuthorization(ctx, w, ar, client, resources, user, "", vouch)
}

// pendingAuthorization is an authorization request that passed the
// endpoint's checks, with what policy says of its client before anyone
// signs in.
type pendingAuthorization struct {
	ar        fosite.AuthorizeRequester
	client    *Client
	resources []string
	// tier is the client's trust tier; refused, when not empty, are the
	// reasons policy refuses it whoever signs in.
	tier    string
	refused []string
	// version is the policy version that decided.
	version string
}

// refusal is the OAuth error of a client refused whoever signs in.
func (p *pendingAuthorization) refusal() error {
	return fosite.ErrAccessDenied.WithHint(strings.Join(p.refused, "; "))
}

// preflight asks policy the question the authorization code flow asks
// after sign-in (pbac/token, grant authorization_code, the requested
// scopes and resources) without a person. The decision itself denies (no
// subject); what counts is its refused_for_every_subject — the reasons it
// denies whoever the person is, which the policy computes without reading
// the subject — and the client's tier. A policy that predates the field
// refuses nothing here, and the decision after sign-in decides as before.
func (s *Server) preflight(ctx context.Context, client *Client, ar fosite.AuthorizeRequester, resources []string) (*pendingAuthorization, error) {
	var td contract.TokenResult
	d, err := s.decide(ctx, contract.Token, contract.Input{
		Client:  s.policyClient(client),
		Request: contract.Request{GrantType: "authorization_code", Scopes: ar.GetRequestedScopes(), Resource: resources},
	}, &td)
	if err != nil {
		return nil, err
	}
	return &pendingAuthorization{ar: ar, client: client, resources: resources, tier: td.Tier, refused: td.RefusedForEverySubject,
		version: d.Version}, nil
}

// ScopeOfflineAccess is the OpenID Connect scope by which a client asks
// for a refresh token (SEP-2207).
const ScopeOfflineAccess = "offline_access"

// dropOfflineAccess takes offline_access out of an authorization request's
// scope before fosite reads it, unless the active policy has a scope of
// that name. It is not a resource's scope (SEP-2207): a client that adds
// it asks for a refresh token, which comes with the code's tokens when the
// client registered the refresh_token grant (fosite, RefreshTokenScopes
// empty) and policy allows the grant; without that grant the client gets
// none, and is not refused for asking. A request with several scope
// parameters is left as it is, for checkAuthorizeParams to refuse.
func (s *Server) dropOfflineAccess(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return err
	}
	if slices.Contains(s.scopes(), ScopeOfflineAccess) || len(r.Form["scope"]) != 1 {
		return nil
	}
	asked := strings.Split(r.Form.Get("scope"), " ")
	kept := slices.DeleteFunc(slices.Clone(asked), func(sc string) bool { return sc == ScopeOfflineAccess })
	if len(kept) == len(asked) {
		return nil
	}
	scope := strings.Join(kept, " ")
	r.Form.Set("scope", scope)
	if _, ok := r.PostForm["scope"]; ok {
		r.PostForm.Set("scope", scope)
	}
	return nil
}

// authorizeRequest reads and checks an authorization request (answering
// the failures itself): fosite's checks, the redirect URI rule, PKCE with
// S256, the resources; and that people can sign in here at all.
func (s *Server) authorizeRequest(ctx context.Context, w http.ResponseWriter, r *http.Request) (fosite.AuthorizeRequester, *Client, []string, bool) {
	if s.clients.metadata != nil {
		ctx = withRedirectHint(ctx, r)
	}
	if err := s.dropOfflineAccess(r); err != nil {
		s.event(ctx, Event{Kind: EventAuthorization, Action: "authorize", Error: "invalid_request",
			Reason: "the request could not be read: " + err.Error(), Status: http.StatusBadRequest, Remote: remoteHost(r)})
		s.renderError(w, http.StatusBadRequest, "invalid_request", "The request could not be read.")
		return nil, nil, nil, false
	}
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		if e, ok := metadataError(err); ok {
			err = e // what was wrong with the client's metadata document, not "no such client"
		}
		s.log.InfoContext(ctx, "authorize request rejected", "client_id", requestClientID(r), "reason", refusalReason(err))
		s.refuseAuthorization(ctx, w, ar, err, Event{Remote: remoteHost(r)})
		return nil, nil, nil, false
	}
	// The redirect URI obeys the rule registration applies (fosite matches
	// loopback URIs by host and path only), and every parameter that has
	// one value has one: otherwise there is no URI to answer to.
	if err := checkAuthorizeParams(r.Form, ar); err != nil {
		s.log.InfoContext(ctx, "authorize request rejected", "client_id", requestClientID(r), "reason", err.Error())
		e := Event{Kind: EventAuthorization, Action: "authorize", Error: "invalid_request", Reason: err.Error(),
			Status: http.StatusBadRequest, Remote: remoteHost(r), ClientID: requestClientID(r)}
		if c, ok := ar.GetClient().(*Client); ok {
			s.forClient(&e, c)
		}
		s.event(ctx, e)
		s.renderError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return nil, nil, nil, false
	}
	// PKCE with S256 is checked before the sign-in page is shown (fosite's
	// PKCE handler checks again when the code is issued).
	if ar.GetRequestForm().Get("code_challenge") == "" {
		s.authorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method S256."))
		return nil, nil, nil, false
	}
	if ar.GetRequestForm().Get("code_challenge_method") != "S256" {
		s.authorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("Only the S256 code challenge method is supported."))
		return nil, nil, nil, false
	}
	resources, err := s.resourcesFor(r.Form)
	if err != nil {
		s.authorizeError(ctx, w, ar, err)
		return nil, nil, nil, false
	}
	client, ok := ar.GetClient().(*Client)
	if !ok {
		s.authorizeError(ctx, w, ar, fosite.ErrServerError.WithDebug("unexpected client type"))
		return nil, nil, nil, false
	}
	if !s.humanSignIn() {
		s.log.WarnContext(ctx, "authorization refused: no identity source is configured", "client_id", client.ID)
		s.authorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint(errNoIdentitySource))
		return nil, nil, nil, false
	}
	return ar, client, resources, true
}

// grantAuthorization asks policy for the grant of a signed-in person and,
// when it allows, records the person's new vouch (proposeVouch: client
// carries it already, nil when none) and issues the authorization code;
// via is how they signed in (Session.Via).
func (s *Server) grantAuthorization(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, client *Client, resources []string, user User, via string, vouch *ClientVouch) {
	var td contract.TokenResult
	d, err := s.decide(ctx, contract.Token, contract.Input{
		Client:  s.policyClient(client),
		Subject: subjectInput(&user),
		Request: contract.Request{GrantType: "authorization_code", Scopes: ar.GetRequestedScopes(), Resource: resources},
	}, &td)
	if err != nil {
		s.authorizeError(ctx, w, ar, policyError(err))
		return
	}
	refused := Event{Subject: user.Subject, Tier: td.Tier, PolicyVersion: d.Version}
	if !d.Allow {
		s.log.InfoContext(ctx, "authorization denied by policy", "client_id", client.ID, "sub", user.Subject, "reasons", d.Reasons)
		s.refuseAuthorization(ctx, w, ar, fosite.ErrAccessDenied.WithHint(strings.Join(d.Reasons, "; ")), refused)
		return
	}
	for _, sc := range td.Scopes {
		ar.GrantScope(sc)
	}
	for _, res := range resources {
		ar.GrantAudience(res)
	}
	// The sign-in fields never travel with the stored request.
	if req, ok := ar.(*fosite.AuthorizeRequest); ok {
		for _, k := range []string{"username", "password", "csrf_token", "decision", "vouch"} {
			req.Form.Del(k)
		}
	}
	if vouch != nil {
		// The person's word, which policy just allowed the grant with.
		if err := s.recordVouch(ctx, client.ID, vouch); err != nil {
			s.refuseAuthorization(ctx, w, ar, err, refused)
			return
		}
	}
	if err := s.anchorMetadataClient(ctx, client); err != nil {
		s.log.ErrorContext(ctx, "authorization refused", "client_id", client.ID, "err", err)
		s.refuseAuthorization(ctx, w, ar, anchorError(err), refused)
		return
	}
	session := &Session{Subject: user.Subject, Roles: user.Roles, Groups: user.Groups, Via: via, ClientID: client.ID, Tier: td.Tier,
		AuthTime: s.now().UTC()}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, session)
	if err != nil {
		if errors.Is(err, ErrSubjectRevoked) {
			err = fosite.ErrAccessDenied.WithHint("Everything acting for you was just revoked; sign in again.").WithWrap(err)
		}
		s.refuseAuthorization(ctx, w, ar, err, refused)
		return
	}
	s.log.InfoContext(ctx, "authorization code issued", "client_id", client.ID, "sub", user.Subject, "groups", user.Groups,
		"via", cmp.Or(via, "password"), "scopes", td.Scopes)
	s.event(ctx, *s.forClient(&Event{Kind: EventAuthorization, Action: "authorize", Allowed: true, Status: http.StatusFound,
		Subject: user.Subject, Tier: td.Tier, Scopes: td.Scopes, PolicyVersion: d.Version,
		Reason: "authorization code issued; signed in with " + cmp.Or(via, "password")}, client))
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// singleValuedAuthorizeParams may appear at most once in an authorization
// request (RFC 6749 §3.1); resource may repeat (RFC 8707).
var singleValuedAuthorizeParams = []string{"client_id", "redirect_uri", "response_type", "response_mode",
	"state", "scope", "code_challenge", "code_challenge_method"}

// checkAuthorizeParams refuses an authorization request fosite accepted
// whose redirect URI breaks the registration rule (checkRedirectURI), as
// sent or as fosite resolved it, or that repeats a single-valued parameter.
func checkAuthorizeParams(form url.Values, ar fosite.AuthorizeRequester) error {
	for _, k := range singleValuedAuthorizeParams {
		if len(form[k]) > 1 {
			return fmt.Errorf("the %s parameter is repeated", k)
		}
	}
	if raw := form.Get("redirect_uri"); raw != "" {
		if err := checkRedirectURI(raw); err != nil {
			return fmt.Errorf("redirect_uri: %w", err)
		}
	}
	u := ar.GetRedirectURI()
	if u == nil || checkRedirectURI(u.String()) != nil || ar.GetClient() == nil ||
		!redirectRegistered(u, ar.GetClient().GetRedirectURIs()) {
		return errors.New("the redirect URI is not one this server redirects to")
	}
	return nil
}

// redirectRegistered tells whether u is one of the registered redirect
// URIs: the same string, or for http to a loopback IP literal the same
// host, path and query on any port (RFC 8252 §7.3). fosite's own loopback
// match ignores the registered URI's scheme.
func redirectRegistered(u *url.URL, registered []string) bool {
	for _, r := range registered {
		if u.String() == r {
			return true
		}
		ru, err := url.Parse(r)
		if err == nil && isLoopbackRedirect(u) && isLoopbackRedirect(ru) && net.ParseIP(u.Hostname()) != nil && ru.Hostname() == u.Hostname() &&
			ru.Path == u.Path && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

// authorizeError answers a failed authorization request. The error goes
// back to the client's redirect URI (RFC 6749 §4.1.2.1) only when that URI
// can be trusted with an unattended redirect; otherwise the user gets an
// error page (RFC 9700 §4.11.2): a self-registered, unverified client may
// name anyone's https or private-use URI, and redirecting there on a bad
// request, with no user interaction, would make this server an open
// redirector for phishing.
func (s *Server) authorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	s.refuseAuthorization(ctx, w, ar, err, Event{})
}

// refuseAuthorization is authorizeError that records the refusal with
// what is known of the request (e: its subject, tier, policy version).
func (s *Server) refuseAuthorization(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error, e Event) {
	e.Kind, e.Action = EventAuthorization, "authorize"
	if ar != nil {
		if c, ok := ar.GetClient().(*Client); ok {
			s.forClient(&e, c)
		} else if form := ar.GetRequestForm(); form != nil {
			e.ClientID = form.Get("client_id")
		}
	}
	s.event(ctx, *e.refusal(err))
	if ar != nil && s.redirectTrusted(ar) {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	f := fosite.ErrorToRFC6749Error(err)
	s.renderError(w, e.Status, f.ErrorField, f.GetDescription())
}

// redirectTrusted tells whether an authorization request's answer may be
// redirected to its redirect URI without the user's say: the URI was
// matched against the client's registration and obeys the registration
// rule, and either it can only reach the user's own machine (loopback) or
// the client is verified by a trusted software statement.
func (s *Server) redirectTrusted(ar fosite.AuthorizeRequester) bool {
	if !ar.IsRedirectURIValid() {
		return false
	}
	u := ar.GetRedirectURI()
	if checkRedirectURI(u.String()) != nil {
		return false
	}
	if isLoopbackRedirect(u) {
		return true
	}
	c, ok := ar.GetClient().(*Client)
	return ok && s.policyClient(c).Verified
}

// renderError shows an authorization error to the user instead of
// redirecting to the client.
func (s *Server) renderError(w http.ResponseWriter, status int, code, description string) {
	setPageHeaders(w)
	w.WriteHeader(status)
	if err := errorPage.Execute(w, struct{ Code, Description string }{code, description}); err != nil {
		s.log.Error("render authorization error page", "err", err)
	}
}

// renderLogin shows the sign-in page with a fresh form token, bound to
// this browser (its sign-in cookie, set here when absent) and to this
// authorization request.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, p *pendingAuthorization, username, msg string, status int) {
	cookie := signInCookie(r)
	if cookie == "" {
		cookie = randomToken(32)
	}
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: cookie, Path: PathAuthorize, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(s.forms.TTL() / time.Second),
	})
	view := signInView{
		Agent: s.agentView(p), Demo: isDemoUsers(s.users), Passwords: s.users != nil,
		Action: PathAuthorize + "?" + r.URL.RawQuery, CSRF: s.forms.Issue(cookie, signInBinding(r.Form)),
		Username: username, Error: msg,
	}
	if s.sso != nil {
		view.SSO = s.sso.Label()
	}
	view.Vouch = s.vouchable(p.client)
	s.renderSignIn(w, view, status)
}

// renderRefusal shows the first page for a client policy refuses whoever
// signs in: who is asking, and why not. The client is told access_denied
// only where its redirect URI may be trusted with an answer (the person
// follows the page's link back); otherwise only the person is told (RFC
// 9700 §4.11.2, as for every other error).
func (s *Server) renderRefusal(ctx context.Context, w http.ResponseWriter, p *pendingAuthorization) {
	view := signInView{Agent: s.agentView(p), Refused: p.refused,
		AwaitsReview: !isMetadataClient(p.client) && s.clientAsSeen(p.client).PolicyAttestation() == nil}
	if loc := s.errorRedirect(ctx, p.ar, p.refusal()); loc != "" {
		// The URI passed the redirect rule (checkRedirectURI: https, http
		// to loopback or a private-use scheme with a dot, never javascript:
		// or data:), so it may be a link; html/template still escapes it.
		view.ReturnURL = template.URL(loc)
	}
	s.renderSignIn(w, view, http.StatusForbidden)
}

func (s *Server) renderSignIn(w http.ResponseWriter, view signInView, status int) {
	setPageHeaders(w)
	w.WriteHeader(status)
	if err := signInPage.Execute(w, view); err != nil {
		s.log.Error("render the sign-in page", "err", err)
	}
}

// agentView is who asks and for what, as the sign-in page shows it.
func (s *Server) agentView(p *pendingAuthorization) agentView {
	c := s.clientAsSeen(p.client)
	v := agentView{
		Name: c.Name, ClientID: c.ID, Verified: c.Agent.Verified, ClaimedName: c.Name != "",
		Tier: p.tier, Scopes: p.ar.GetRequestedScopes(), Resources: p.resources,
	}
	if v.Name == "" {
		v.Name = "An unnamed client"
	}
	if v.Verified {
		v.Provider, v.Model, v.StatementIssuer = c.Agent.AgentProvider, c.Agent.AgentModel, c.Agent.Issuer
	}
	u := p.ar.GetRedirectURI()
	if u != nil {
		v.RedirectHost = cmp.Or(u.Host, u.Scheme+":")
		if !s.redirectTrusted(p.ar) {
			v.SendsTo = u.Scheme + "://" + u.Host
		}
	}
	if c.metadata != nil {
		v.MetadataHost, v.LoopbackOnly = c.metadata.Host, c.metadata.LoopbackOnly()
	} else if a := c.Attestation; a != nil && !v.Verified {
		v.AttestedAs, v.AttestedBy = a.Kind, a.Origin
	}
	return v
}

// errorRedirect is where authorizeError would send the browser for err:
// the client's redirect URI with the error, its state and our iss; "" when
// that URI may not be trusted with an unattended answer.
func (s *Server) errorRedirect(ctx context.Context, ar fosite.AuthorizeRequester, err error) string {
	if !s.redirectTrusted(ar) {
		return ""
	}
	rec := &redirectRecorder{header: http.Header{}}
	s.provider.WriteAuthorizeError(ctx, issWriter{ResponseWriter: rec, iss: s.cfg.Issuer}, ar, err)
	if rec.status/100 != 3 {
		return ""
	}
	return rec.header.Get("Location")
}

// redirectRecorder keeps the status and headers of an answer, for the
// redirect fosite would write.
type redirectRecorder struct {
	header http.Header
	status int
}

func (r *redirectRecorder) Header() http.Header         { return r.header }
func (r *redirectRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *redirectRecorder) WriteHeader(code int)        { r.status = code }

func isDemoUsers(u UserSource) bool {
	_, ok := u.(DemoUsers)
	return ok
}

// randomToken returns n random bytes, base64url encoded: ids, secrets,
// registration tokens and CSRF tokens.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; on a broken platform it crashes the program
	return base64.RawURLEncoding.EncodeToString(b)
}
