package asrv

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/rego"
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
</div>
<div>It asks for {{if .Scopes}}these scopes:<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}whatever your role and its tier allow.{{end}}
Policy grants the agent no more than its tier and your role allow, and decides every call again.</div>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="username">User</label><input id="username" type="text" name="username" autocomplete="username" value="{{.Username}}" required>
<label for="password">Password</label><input id="password" type="password" name="password" autocomplete="current-password" required>
{{if .Demo}}<div class="muted">Demo users: alice (engineering), bob (analytics), carol (contractor); password <code>demo</code>.</div>{{end}}
{{if .Error}}<div class="err">{{.Error}}</div>{{end}}
<div class="row"><button class="approve" type="submit" name="decision" value="approve">Sign in and approve</button>
<button class="deny" type="submit" name="decision" value="deny" formnovalidate>Deny</button></div>
</form></main></body></html>`))

type loginView struct {
	ClientName, ClientID, Provider, Model string
	Verified, Demo                        bool
	Scopes                                []string
	Action, CSRF, Username, Error         string
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
	w = issWriter{ResponseWriter: w, iss: s.cfg.Issuer}
	ctx := r.Context()
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.log.InfoContext(ctx, "authorize request rejected", "err", err)
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	// PKCE with S256 is checked before the sign-in page is shown (fosite's
	// PKCE handler checks again when the code is issued).
	if ar.GetRequestForm().Get("code_challenge") == "" {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method S256."))
		return
	}
	if ar.GetRequestForm().Get("code_challenge_method") != "S256" {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("Only the S256 code challenge method is supported."))
		return
	}
	resources, err := s.resourcesFor(r.Form)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	client, ok := ar.GetClient().(*Client)
	if !ok {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithDebug("unexpected client type"))
		return
	}
	if r.Method == http.MethodGet {
		s.renderLogin(w, r, client, ar, "", "")
		return
	}
	if !checkCSRF(r) {
		s.renderLogin(w, r, client, ar, r.PostForm.Get("username"), "Your sign-in form expired; please try again.")
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	}
	user, err := s.users.Authenticate(ctx, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if err != nil {
		s.renderLogin(w, r, client, ar, r.PostForm.Get("username"), "Unknown user or wrong password.")
		return
	}

	var td tokenDecision
	d, err := s.decide(ctx, EntrypointToken, rego.Input{
		Client:  client.PolicyClient(),
		Subject: subjectInput(&user),
		Request: rego.Request{GrantType: "authorization_code", Scopes: ar.GetRequestedScopes(), Resource: resources},
	}, &td)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, policyError(err))
		return
	}
	if !d.Allow {
		s.log.InfoContext(ctx, "authorization denied by policy", "client_id", client.ID, "sub", user.Subject, "reasons", d.Reasons)
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint(strings.Join(d.Reasons, "; ")))
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
	session := &Session{Subject: user.Subject, Roles: user.Roles, ClientID: client.ID, Tier: td.Tier}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, session)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	s.log.InfoContext(ctx, "authorization code issued", "client_id", client.ID, "sub", user.Subject, "scopes", td.Scopes)
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, c *Client, ar fosite.AuthorizeRequester, username, msg string) {
	token := randomToken(32)
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: token, Path: PathAuthorize, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 600,
	})
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	name := c.Name
	if name == "" {
		name = "An unnamed client"
	}
	view := loginView{
		ClientName: name, ClientID: c.ID, Provider: c.Agent.AgentProvider, Model: c.Agent.AgentModel,
		Verified: c.Agent.Verified, Demo: isDemoUsers(s.users), Scopes: ar.GetRequestedScopes(),
		Action: PathAuthorize + "?" + r.URL.RawQuery, CSRF: token, Username: username, Error: msg,
	}
	if msg != "" {
		w.WriteHeader(http.StatusUnauthorized)
	}
	if err := loginPage.Execute(w, view); err != nil {
		s.log.Error("render login page", "err", err)
	}
}

func isDemoUsers(u UserSource) bool {
	_, ok := u.(DemoUsers)
	return ok
}

func checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf_token"))) == 1
}

// randomToken returns n random bytes, base64url encoded: ids, secrets,
// registration tokens and CSRF tokens.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; on a broken platform it crashes the program
	return base64.RawURLEncoding.EncodeToString(b)
}
