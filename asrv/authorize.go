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
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/contract"
)

const csrfCookie = "pbac_authz_csrf"

// loginPage is the sign-in and consent page of the authorization endpoint.
// It has no external assets and posts back to the same URL, so the original
// authorization request travels in the query string.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in — PBAC Gateway</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:440px;margin:48px auto;background:#fff;border-radius:10px;padding:28px 32px;box-shadow:0 2px 12px #0001}
h1{font-size:20px;margin:0 0 4px}.muted{color:#5b6475;font-size:13px}
.agent{background:#f0f3fa;border-radius:8px;padding:10px 12px;margin:16px 0}
.badge{display:inline-block;font-size:12px;padding:1px 8px;border-radius:10px;background:#dff5e3;color:#17632a}
.badge.warn{background:#fdecc8;color:#7a4b00}
label{display:block;margin:12px 0 4px;font-weight:600}input[type=text],input[type=password]{width:100%;padding:8px;border:1px solid #c8cdd6;border-radius:6px;box-sizing:border-box}
ul{padding-left:20px;margin:6px 0}code{font-size:13px}
.row{display:flex;gap:10px;margin-top:20px}button{flex:1;padding:10px;border-radius:6px;border:0;font-size:15px;cursor:pointer}
.approve{background:#2456d3;color:#fff}.deny{background:#e6e8ee;color:#1d2330}.err{color:#b3261e;margin-top:12px}
</style></head><body><main>
<h1>Sign in to authorize an agent</h1>
<div class="muted">PBAC Gateway authorization server</div>
<div class="agent">
<strong>{{.ClientName}}</strong>
{{if .Verified}}<span class="badge">verified</span>
<div class="muted">provider <code>{{.Provider}}</code>{{if .Model}}, model <code>{{.Model}}</code>{{end}}</div>
{{else}}<span class="badge warn">unverified</span>
<div class="muted">No signed software statement: policy gives it the least trust tier.</div>{{end}}
<div class="muted">client id <code>{{.ClientID}}</code></div>
{{if .MetadataHost}}<div class="muted">Described by a metadata document published by <code>{{.MetadataHost}}</code>{{if not .SendsTo}}; once you have signed in and approved, your browser is sent back to <code>{{.RedirectHost}}</code>{{end}}.</div>
{{if .LoopbackOnly}}<div class="muted"><span class="badge warn">localhost only</span> This client only redirects to this computer, so any program on it could claim to be it: approve only if you started this sign-in yourself, just now.</div>{{end}}{{end}}
{{if .SendsTo}}<div class="muted">After you approve, your browser is sent to <code>{{.SendsTo}}</code>, an address nobody vouched for: approve only if you started this sign-in there.</div>{{end}}
</div>
<div>It asks for {{if .Scopes}}these scopes:<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}whatever your role and its tier allow.{{end}}
Policy grants the agent no more than its tier and your role allow, and decides every call again.</div>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
{{if .SSO}}<div class="row"><button class="approve" type="submit" name="decision" value="sso" formnovalidate>Sign in with {{.SSO}} and approve</button></div>
{{if .Passwords}}<div class="muted" style="margin-top:16px">or with a name and password:</div>{{end}}{{end}}
{{if .Passwords}}<label for="username">User</label><input id="username" type="text" name="username" autocomplete="username" value="{{.Username}}" required>
<label for="password">Password</label><input id="password" type="password" name="password" autocomplete="current-password" required>
{{if .Demo}}<div class="muted">Demo users: alice (engineering), bob (analytics), carol (contractor); password <code>demo</code>.</div>{{end}}{{end}}
{{if .Error}}<div class="err">{{.Error}}</div>{{end}}
<div class="row">{{if .Passwords}}<button class="approve" type="submit" name="decision" value="approve">Sign in and approve</button>
{{end}}<button class="deny" type="submit" name="decision" value="deny" formnovalidate>Deny</button></div>
</form></main></body></html>`))

type loginView struct {
	ClientName, ClientID, Provider, Model string
	Verified, Demo                        bool
	// Passwords: the name and password form is offered; SSO, when set,
	// names the identity provider the single sign-on button goes to.
	Passwords                     bool
	SSO                           string
	Scopes                        []string
	Action, CSRF, Username, Error string
	// SendsTo names where an untrusted redirect URI leads (scheme and
	// host), for the user to judge before approving.
	SendsTo string
	// For a client of a metadata document: the host that publishes it,
	// where the redirect leads, and whether it only ever leads to this
	// computer (MCP security considerations: show the redirect host, warn
	// for localhost-only clients).
	MetadataHost, RedirectHost string
	LoopbackOnly               bool
}

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

func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	browser := w // for the redirect to the identity provider, which is not an answer to the client
	w = issWriter{ResponseWriter: w, iss: s.cfg.Issuer}
	ctx := r.Context()
	ar, client, resources, ok := s.authorizeRequest(ctx, w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodGet {
		s.renderLogin(w, r, client, ar, "", "", http.StatusOK)
		return
	}
	username := r.PostForm.Get("username")
	if err := s.checkSignInForm(r); err != nil {
		if !errors.Is(err, signin.ErrFormInvalid) && !errors.Is(err, signin.ErrFormExpired) {
			s.log.ErrorContext(ctx, "sign-in form check failed", "err", err)
		}
		s.renderLogin(w, r, client, ar, username, "Your sign-in form expired; please try again.", http.StatusForbidden)
		return
	}
	switch d := r.PostForm.Get("decision"); {
	case d == "sso" && s.sso != nil:
		s.startSSO(ctx, browser, w, r, client, ar)
		return
	case d != "approve":
		s.authorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	case s.users == nil:
		s.renderLogin(w, r, client, ar, username, "Signing in with a password is not available here.", http.StatusBadRequest)
		return
	}
	attempt, err := s.signIn.Begin(ctx, signin.Attempt{Surface: "authorize", Username: username, RemoteAddr: r.RemoteAddr})
	var throttled *signin.ThrottledError
	if errors.As(err, &throttled) {
		wait := max(time.Second, throttled.RetryAfter.Round(time.Second))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		s.renderLogin(w, r, client, ar, username, fmt.Sprintf("Too many failed sign-in attempts: try again in %s.", wait), http.StatusTooManyRequests)
		return
	}
	user, err := s.users.Authenticate(ctx, username, r.PostForm.Get("password"))
	attempt.Done(ctx, err == nil)
	if err != nil {
		s.renderLogin(w, r, client, ar, username, "Unknown user or wrong password.", http.StatusUnauthorized)
		return
	}
	s.grantAuthorization(ctx, w, ar, client, resources, user, "")
}

// authorizeRequest reads and checks an authorization request (answering
// the failures itself): fosite's checks, the redirect URI rule, PKCE with
// S256, the resources; and that people can sign in here at all.
func (s *Server) authorizeRequest(ctx context.Context, w http.ResponseWriter, r *http.Request) (fosite.AuthorizeRequester, *Client, []string, bool) {
	if s.clients.metadata != nil {
		ctx = withRedirectHint(ctx, r)
	}
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		if e, ok := metadataError(err); ok {
			err = e // what was wrong with the client's metadata document, not "no such client"
		}
		s.log.InfoContext(ctx, "authorize request rejected", "err", err)
		s.authorizeError(ctx, w, ar, err)
		return nil, nil, nil, false
	}
	// The redirect URI obeys the rule registration applies (fosite matches
	// loopback URIs by host and path only), and every parameter that has
	// one value has one: otherwise there is no URI to answer to.
	if err := checkAuthorizeParams(r.Form, ar); err != nil {
		s.log.InfoContext(ctx, "authorize request rejected", "err", err)
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
// when it allows, issues the authorization code; via is how they signed in
// (Session.Via).
func (s *Server) grantAuthorization(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, client *Client, resources []string, user User, via string) {
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
	if !d.Allow {
		s.log.InfoContext(ctx, "authorization denied by policy", "client_id", client.ID, "sub", user.Subject, "reasons", d.Reasons)
		s.authorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint(strings.Join(d.Reasons, "; ")))
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
		for _, k := range []string{"username", "password", "csrf_token", "decision"} {
			req.Form.Del(k)
		}
	}
	if err := s.anchorMetadataClient(ctx, client); err != nil {
		s.log.ErrorContext(ctx, "authorization refused", "client_id", client.ID, "err", err)
		s.authorizeError(ctx, w, ar, anchorError(err))
		return
	}
	session := &Session{Subject: user.Subject, Roles: user.Roles, Groups: user.Groups, Via: via, ClientID: client.ID, Tier: td.Tier,
		AuthTime: s.now().UTC()}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, session)
	if err != nil {
		if errors.Is(err, ErrSubjectRevoked) {
			err = fosite.ErrAccessDenied.WithHint("Everything acting for you was just revoked; sign in again.").WithWrap(err)
		}
		s.authorizeError(ctx, w, ar, err)
		return
	}
	s.log.InfoContext(ctx, "authorization code issued", "client_id", client.ID, "sub", user.Subject, "groups", user.Groups,
		"via", cmp.Or(via, "password"), "scopes", td.Scopes)
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
	if ar != nil && s.redirectTrusted(ar) {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	e := fosite.ErrorToRFC6749Error(err)
	status := e.CodeField
	if status < 400 || status > 599 {
		status = http.StatusBadRequest
	}
	s.renderError(w, status, e.ErrorField, e.GetDescription())
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

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorization failed — PBAC Gateway</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:440px;margin:48px auto;background:#fff;border-radius:10px;padding:28px 32px;box-shadow:0 2px 12px #0001}
h1{font-size:20px;margin:0 0 8px}.muted{color:#5b6475;font-size:13px}code{font-size:13px}
</style></head><body><main>
<h1>This authorization request cannot be completed</h1>
<p>{{if .Description}}{{.Description}}{{else}}The request is not valid.{{end}}</p>
<p class="muted">Error <code>{{.Code}}</code>. You can close this window; the application that sent you here was not told the outcome.</p>
</main></body></html>`))

// renderError shows an authorization error to the user instead of
// redirecting to the client.
func (s *Server) renderError(w http.ResponseWriter, status int, code, description string) {
	setPageHeaders(w)
	w.WriteHeader(status)
	if err := errorPage.Execute(w, struct{ Code, Description string }{code, description}); err != nil {
		s.log.Error("render authorization error page", "err", err)
	}
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

// renderLogin shows the sign-in page with a fresh form token, bound to
// this browser (its sign-in cookie, set here when absent) and to this
// authorization request.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, c *Client, ar fosite.AuthorizeRequester, username, msg string, status int) {
	cookie := signInCookie(r)
	if cookie == "" {
		cookie = randomToken(32)
	}
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: cookie, Path: PathAuthorize, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(s.forms.TTL() / time.Second),
	})
	setPageHeaders(w)
	name := c.Name
	if name == "" {
		name = "An unnamed client"
	}
	agent := s.policyClient(c)
	view := loginView{
		ClientName: name, ClientID: c.ID, Provider: agent.AgentProvider, Model: agent.AgentModel,
		Verified: agent.Verified, Demo: isDemoUsers(s.users), Scopes: ar.GetRequestedScopes(), Passwords: s.users != nil,
		Action: PathAuthorize + "?" + r.URL.RawQuery, CSRF: s.forms.Issue(cookie, signInBinding(r.Form)),
		Username: username, Error: msg,
	}
	if u := ar.GetRedirectURI(); u != nil && !s.redirectTrusted(ar) {
		view.SendsTo = u.Scheme + "://" + u.Host
	}
	if c.metadata != nil {
		view.MetadataHost, view.LoopbackOnly = c.metadata.Host, c.metadata.LoopbackOnly()
		if u := ar.GetRedirectURI(); u != nil {
			view.RedirectHost = u.Host
		}
	}
	if s.sso != nil {
		view.SSO = s.sso.Label()
	}
	w.WriteHeader(status)
	if err := loginPage.Execute(w, view); err != nil {
		s.log.Error("render login page", "err", err)
	}
}

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
