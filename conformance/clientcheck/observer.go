// Package clientcheck certifies MCP clients: an Observer sits in front of a
// throwaway tenant (gateway + authorization server) as a recording reverse
// proxy, the client under test talks to it, and Evaluate checks the
// recorded request sequence step by step against the MCP authorization
// specification: metadata discovery after the 401, registration, PKCE S256,
// the resource parameter, token use, step-up on insufficient_scope, refresh
// on expiry, no token sent elsewhere, re-initialization after a session
// ends.
package clientcheck

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Event is one request the client made and how it was answered. Tokens are
// kept as presented (in recorded testdata they are labels: only equality
// matters).
type Event struct {
	// At is when the request arrived.
	At     time.Time  `json:"at,omitzero"`
	Method string     `json:"method"`
	Path   string     `json:"path"`
	Query  url.Values `json:"query,omitempty"`
	// Form is an x-www-form-urlencoded body (token requests), secrets
	// dropped.
	Form url.Values `json:"form,omitempty"`
	// Bearer is the token of an Authorization: Bearer header.
	Bearer string `json:"bearer,omitempty"`
	// BasicClient is the client id of an Authorization: Basic header.
	BasicClient string `json:"basic_client,omitempty"`
	// RPC is the JSON-RPC method of the body ("" for a response or none).
	RPC     string `json:"rpc,omitempty"`
	Session string `json:"session,omitempty"`
	Status  int    `json:"status"`
	// WWWAuthenticate is the answer's challenge.
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
	// AccessToken and RefreshToken are what a token response issued.
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is the scope a token response granted.
	Scope string `json:"scope,omitempty"`
	// SignedIn marks an authorization request the harness signed in for.
	SignedIn bool `json:"signed_in,omitempty"`
	// AuthorizeError is the error an authorization request's redirect
	// carried back to the client (invalid_scope, access_denied, ...).
	AuthorizeError string `json:"authorize_error,omitempty"`
	// OAuthError is the OAuth error body (error: error_description) of a
	// refused token or registration request.
	OAuthError string `json:"oauth_error,omitempty"`
	// Protocol is the MCP revision a JSON-RPC request speaks: its
	// MCP-Protocol-Version header, else its params._meta's
	// io.modelcontextprotocol/protocolVersion, else (initialize) its
	// params.protocolVersion.
	Protocol string `json:"protocol,omitempty"`
	// ElicitURL: the request declared URL-mode elicitation — initialize in
	// params.capabilities, any request in params._meta's
	// io.modelcontextprotocol/clientCapabilities.
	ElicitURL bool `json:"elicit_url,omitempty"`
}

// redirectError is the error parameter (and its description) of an
// authorization redirect's Location.
func redirectError(loc string) string {
	u, err := url.Parse(loc)
	if err != nil || u.Query().Get("error") == "" {
		return ""
	}
	if d := u.Query().Get("error_description"); d != "" {
		return u.Query().Get("error") + ": " + d
	}
	return u.Query().Get("error")
}

// Delay holds the answer to one request: the first successful answer to
// the JSON-RPC method RPC is sent only after For (to let a token or a
// session expire before the client's next request).
type Delay struct {
	RPC string
	For time.Duration
}

// ObserverConfig configures an Observer.
type ObserverConfig struct {
	// Upstream is the tenant (gateway with the AS mounted).
	Upstream *url.URL
	// SignInUser and SignInPassword: when set, an authorization request
	// the client itself fetches (rather than a person's browser) is signed
	// in for by the harness, on the AS's own sign-in page, and the client
	// gets the AS's redirect, as the official conformance suite's AS does.
	SignInUser, SignInPassword string
	Delay                      *Delay
	Logger                     *slog.Logger
}

// Observer is the recording reverse proxy.
type Observer struct {
	cfg   ObserverConfig
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	events  []Event
	delayed bool
}

// NewObserver builds an Observer for the tenant at cfg.Upstream.
func NewObserver(cfg ObserverConfig) *Observer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Observer{cfg: cfg}
	o.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Upstream)
			pr.Out.Host = pr.In.Host // the gateway sees the public host
		},
		FlushInterval: -1, // SSE streams pass at once
		ModifyResponse: func(resp *http.Response) error {
			o.answered(resp)
			return nil
		},
	}
	return o
}

// Events returns a copy of what was recorded so far.
func (o *Observer) Events() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Event(nil), o.events...)
}

type eventKey struct{}

type pending struct {
	idx int
}

func (o *Observer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev := Event{At: time.Now(), Method: r.Method, Path: r.URL.Path, Session: r.Header.Get("Mcp-Session-Id")}
	if len(r.URL.Query()) > 0 {
		ev.Query = r.URL.Query()
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		ev.Bearer = tok
	}
	if id, _, ok := r.BasicAuth(); ok {
		ev.BasicClient, _ = url.QueryUnescape(id)
	}
	if r.Body != nil && r.Method == http.MethodPost {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ct {
		case "application/x-www-form-urlencoded":
			if f, err := url.ParseQuery(string(body)); err == nil {
				f.Del("client_secret")
				f.Del("password")
				ev.Form = f
			}
		case "application/json":
			var m rpcRequest
			if json.Unmarshal(body, &m) == nil {
				ev.RPC = m.Method
				ev.Protocol, ev.ElicitURL = m.declared(r.Header.Get("Mcp-Protocol-Version"))
			}
		}
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/oauth2/authorize") && o.cfg.SignInUser != "" && isClientFetch(r) {
		ev.SignedIn = true
		loc, status := o.signIn(r)
		ev.Status, ev.AuthorizeError = status, redirectError(loc)
		o.record(ev)
		if loc != "" {
			w.Header().Set("Location", loc)
		}
		w.WriteHeader(status)
		return
	}
	idx := o.record(ev)
	r = r.WithContext(contextWith(r.Context(), idx))
	o.proxy.ServeHTTP(w, r)
}

// rpcRequest is what the observer reads of a JSON-RPC request.
type rpcRequest struct {
	Method string `json:"method"`
	Params struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		Meta            struct {
			ProtocolVersion    string          `json:"io.modelcontextprotocol/protocolVersion"`
			ClientCapabilities json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
		} `json:"_meta"`
	} `json:"params"`
}

// declared is the revision the request speaks (header is its
// MCP-Protocol-Version) and whether it declared URL elicitation.
func (m rpcRequest) declared(header string) (protocol string, elicitURL bool) {
	protocol = header
	if protocol == "" {
		protocol = m.Params.Meta.ProtocolVersion
	}
	if protocol == "" && m.Method == "initialize" {
		protocol = m.Params.ProtocolVersion
	}
	caps := m.Params.Meta.ClientCapabilities
	if m.Method == "initialize" && len(m.Params.Capabilities) > 0 {
		caps = m.Params.Capabilities
	}
	var c struct {
		Elicitation *struct {
			URL json.RawMessage `json:"url"`
		} `json:"elicitation"`
	}
	if len(caps) > 0 && json.Unmarshal(caps, &c) == nil && c.Elicitation != nil {
		elicitURL = c.Elicitation.URL != nil
	}
	return protocol, elicitURL
}

// isClientFetch tells a client fetching the authorization URL itself from
// a browser navigating to it.
func isClientFetch(r *http.Request) bool {
	return !strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (o *Observer) record(ev Event) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, ev)
	return len(o.events) - 1
}

func (o *Observer) answered(resp *http.Response) {
	idx, ok := indexFrom(resp.Request.Context())
	if !ok {
		return
	}
	var access, refresh, scope, oauthErr string
	if p := resp.Request.URL.Path; (strings.HasSuffix(p, "/oauth2/token") || strings.HasSuffix(p, "/register")) && resp.StatusCode >= 400 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			oauthErr = e.Error
			if e.Description != "" {
				oauthErr += ": " + e.Description
			}
		}
	}
	if strings.HasSuffix(resp.Request.URL.Path, "/oauth2/token") && resp.StatusCode == http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var t struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			Scope        string `json:"scope"`
		}
		_ = json.Unmarshal(body, &t)
		access, refresh, scope = t.AccessToken, t.RefreshToken, t.Scope
	}
	o.mu.Lock()
	ev := &o.events[idx]
	ev.Status = resp.StatusCode
	ev.WWWAuthenticate = resp.Header.Get("WWW-Authenticate")
	ev.AccessToken, ev.RefreshToken, ev.Scope, ev.OAuthError = access, refresh, scope, oauthErr
	if strings.HasSuffix(resp.Request.URL.Path, "/oauth2/authorize") && resp.StatusCode/100 == 3 {
		ev.AuthorizeError = redirectError(resp.Header.Get("Location"))
	}
	hold := time.Duration(0)
	if d := o.cfg.Delay; d != nil && !o.delayed && ev.RPC == d.RPC && resp.StatusCode/100 == 2 {
		o.delayed, hold = true, d.For
	}
	o.mu.Unlock()
	if hold > 0 {
		o.cfg.Logger.Info("holding an answer so the token or session expires", "rpc", ev.RPC, "for", hold)
		time.Sleep(hold)
	}
}

var (
	csrfField  = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	returnLink = regexp.MustCompile(`id="return" href="([^"]+)"`)
)

// signIn does what a person would in a browser: loads the AS's sign-in
// page for the client's authorization URL, signs in and approves, and
// returns where the AS redirects (the client's redirect URI with the code).
func (o *Observer) signIn(r *http.Request) (string, int) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := *o.cfg.Upstream
	page.Path, page.RawQuery = r.URL.Path, r.URL.RawQuery
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, page.String(), nil)
	req.Host = r.Host
	resp, err := c.Do(req)
	if err != nil {
		return "", http.StatusBadGateway
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 {
		return loc, resp.StatusCode // refused before the page: the AS's own redirect
	}
	if l := returnLink.FindSubmatch(body); resp.StatusCode == http.StatusForbidden && l != nil {
		// Policy refuses the client whoever signs in, and says so on the
		// first page: the person follows its link back, which carries
		// access_denied to the client.
		return html.UnescapeString(string(l[1])), http.StatusSeeOther
	}
	m := csrfField.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return "", resp.StatusCode
	}
	form := url.Values{"username": {o.cfg.SignInUser}, "password": {o.cfg.SignInPassword}, "csrf_token": {string(m[1])}, "decision": {"approve"}}
	post, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, page.String(), strings.NewReader(form.Encode()))
	post.Host = r.Host
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(post)
	if err != nil {
		return "", http.StatusBadGateway
	}
	resp.Body.Close()
	return resp.Header.Get("Location"), resp.StatusCode
}
