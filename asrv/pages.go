package asrv

import (
	"embed"
	"html/template"
	"net/http"
)

// The authorization endpoint's pages: embedded templates with no external
// assets (no CDN, no script), every value escaped by html/template, served
// under a Content-Security-Policy that allows nothing but their own inline
// style.

//go:embed pages
var pageFiles embed.FS

var (
	// signInPage says who is asking (agentView) and then either signs the
	// person in and asks for their consent, or says why policy refuses the
	// agent whoever signs in.
	signInPage = template.Must(template.ParseFS(pageFiles, "pages/signin.html", "pages/agent.tmpl", "pages/style.tmpl"))
	// errorPage shows an authorization error instead of redirecting it to
	// the client.
	errorPage = template.Must(template.ParseFS(pageFiles, "pages/error.html", "pages/style.tmpl"))
)

// signInView is what the sign-in page shows.
type signInView struct {
	Agent agentView
	// Refused are policy's reasons for refusing the agent whoever signs in
	// (TokenResult.RefusedForEverySubject): the page says so and offers no
	// sign-in. ReturnURL is the client's redirect URI with the
	// access_denied error, when it may be trusted with one.
	Refused   []string
	ReturnURL template.URL
	// AwaitsReview: nothing vouches for the refused agent (no statement,
	// operator, metadata document or person); an operator can approve it
	// in the dashboard, where it is pending under its client id.
	AwaitsReview bool
	// Passwords: the name and password form is offered; SSO, when set,
	// names the identity provider the single sign-on button goes to.
	Passwords, Demo               bool
	SSO                           string
	Action, CSRF, Username, Error string
	// Vouch are the providers the person may vouch for the agent as
	// (user attestation); none: the page offers no choice.
	Vouch []string
}

// agentView is who asks and for what, shown before anyone signs in.
type agentView struct {
	Name, ClientID string
	// Verified by a software statement StatementIssuer signed, claiming
	// Provider and Model; else the name (ClaimedName) is the client's own.
	Verified                         bool
	Provider, Model, StatementIssuer string
	ClaimedName                      bool
	// Tier is the trust tier policy puts the agent in.
	Tier      string
	Scopes    []string
	Resources []string
	// RedirectHost is where the browser returns (host and port); SendsTo
	// names the scheme and host of a redirect nobody vouched for, for the
	// person to judge before approving.
	RedirectHost, SendsTo string
	// For a client of a metadata document: the host that publishes it, and
	// whether it only ever redirects to this computer (MCP security
	// considerations: show the redirect host, warn for localhost-only
	// clients).
	MetadataHost string
	LoopbackOnly bool
	// AttestedBy and AttestedAs say how an unverified client is known
	// otherwise (contract.Attestation: its kind and who vouches), for a
	// kind the page has no words of its own for.
	AttestedAs, AttestedBy string
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}
