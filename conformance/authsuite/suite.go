// Package authsuite checks a protected MCP server and its authorization
// server against the MCP authorization specification and the OAuth RFCs it
// builds on (9728, 8414, 7591, 7636, 8707, 7662, 7009, 8693) and the attacks
// of the OAuth security BCP (RFC 9700), over HTTP, as any client would see
// them. It runs against any deployment; checks that need what was not given
// (a user, a pre-registered client, a second resource) are skipped with the
// reason, and checks only our own deployment can answer (an echo backend
// behind the gateway) run only when asked to.
package authsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Status is a check's outcome.
type Status string

// Outcomes.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one check's outcome.
type Result struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Ref      string `json:"ref"`
	Status   Status `json:"status"`
	Message  string `json:"message,omitempty"`
	OursOnly bool   `json:"ours_only,omitempty"`
}

// Report is a run's results in the order they ran.
type Report struct {
	Target  string   `json:"target"`
	Results []Result `json:"results"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Skipped int      `json:"skipped"`
}

// OK reports whether no check failed.
func (r Report) OK() bool { return r.Failed == 0 }

// Config is what the suite is pointed at and what it may use.
type Config struct {
	// URL is the protected MCP endpoint (e.g. https://gw.example/mcp).
	URL string
	// OtherURL is a second protected resource of the same AS; a token for
	// URL must be refused there. Empty skips that check.
	OtherURL string
	// User and Password sign in on the AS's page for the code flow.
	User, Password string
	// ClientID (and ClientSecret for a confidential client) is a client
	// registered at the AS that policy lets have tokens for URL, with
	// RedirectURI among its redirect URIs (default http://127.0.0.1/callback).
	ClientID, ClientSecret, RedirectURI string
	// Scope is asked for in the code flow (space separated; empty: none).
	Scope string
	// StepUp names a tool call the code flow's token lacks the scope for:
	// it must be refused with 403 insufficient_scope. Empty skips.
	StepUpTool string
	StepUpArgs map[string]any
	// ExchangeAudience is a registered client id a token may be exchanged
	// for (RFC 8693). Empty skips the successful exchange.
	ExchangeAudience string
	// IntrospectorID and IntrospectorSecret are a resource server the AS
	// lets call its introspection endpoint (RFC 7662 §2.1 leaves who may to
	// the AS). Empty: the confidential client the suite registers, which
	// an AS with an allow-list refuses (those checks then skip).
	IntrospectorID, IntrospectorSecret string
	// EchoURL (ours only) is an MCP endpoint behind the gateway whose
	// backend answers initialize with the request headers it received.
	EchoURL string
	// RefreshReuseGrace is the AS's refresh token rotation grace period
	// (PBAC Gateway's asrv.refresh_reuse_grace; Okta's grace period,
	// Hydra's rotation_grace_period): the same client replaying a rotated
	// refresh token within it gets a new pair, so the refresh-rotation
	// check expects that first and then replays once the window has
	// passed. Zero: every replay must be refused.
	RefreshReuseGrace time.Duration
	// Ours enables the checks only our own deployment can answer.
	Ours bool
	// HTTP is the client (default: 15 s timeout, no redirects followed).
	HTTP   *http.Client
	Logger *slog.Logger
}

// Run runs every check and returns the report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if _, err := absURL(cfg.URL); err != nil {
		return Report{}, fmt.Errorf("the MCP URL: %w", err)
	}
	if cfg.RedirectURI == "" {
		cfg.RedirectURI = "http://127.0.0.1/callback"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	hc := *cfg.HTTP
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s := &suite{cfg: cfg, http: &hc, ctx: ctx}
	s.run()
	rep := Report{Target: cfg.URL, Results: s.results}
	for _, r := range s.results {
		switch r.Status {
		case Pass:
			rep.Passed++
		case Fail:
			rep.Failed++
		case Skip:
			rep.Skipped++
		}
	}
	return rep, nil
}

// suite is one run's state: what earlier checks learnt, later ones use.
type suite struct {
	cfg     Config
	http    *http.Client
	ctx     context.Context
	results []Result

	prmURL  string         // from the 401 challenge
	prm     map[string]any // RFC 9728 document
	asMeta  map[string]any // RFC 8414 document
	issuer  string
	dcrPub  string // a public client the suite registered
	dcrConf struct{ id, secret string }
	tok     *tokenResponse // from the code flow
}

// check is one entry of the table: it returns the outcome and a message.
type check struct {
	id, title, ref string
	oursOnly       bool
	run            func(s *suite) (Status, string)
}

func (s *suite) run() {
	for _, c := range checks() {
		if c.oursOnly && !s.cfg.Ours {
			s.add(c, Skip, "ours only: needs a PBAC Gateway deployment with an echo backend (--ours --echo-url)")
			continue
		}
		if err := s.ctx.Err(); err != nil {
			s.add(c, Skip, "not run: "+err.Error())
			continue
		}
		st, msg := c.run(s)
		s.cfg.Logger.Debug("check", "id", c.id, "status", st, "message", msg)
		s.add(c, st, msg)
	}
}

func (s *suite) add(c check, st Status, msg string) {
	s.results = append(s.results, Result{ID: c.id, Title: c.title, Ref: c.ref, Status: st, Message: msg, OursOnly: c.oursOnly})
}

func pass(format string, args ...any) (Status, string) { return Pass, fmt.Sprintf(format, args...) }
func fail(format string, args ...any) (Status, string) { return Fail, fmt.Sprintf(format, args...) }
func skip(format string, args ...any) (Status, string) { return Skip, fmt.Sprintf(format, args...) }

// response is an HTTP answer read whole (up to 1 MiB).
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	return m
}

func (r *response) String() string {
	b := strings.TrimSpace(string(r.body))
	if len(b) > 200 {
		b = b[:200] + "…"
	}
	return fmt.Sprintf("HTTP %d %s", r.status, b)
}

func (s *suite) do(req *http.Request) (*response, error) {
	return doWith(s.http, req)
}

func doWith(c *http.Client, req *http.Request) (*response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s %s: %w", req.Method, req.URL, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func (s *suite) get(u string) (*response, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return s.do(req)
}

// postForm posts a form, with HTTP Basic client authentication when user
// is set (RFC 6749 §2.3.1: form-encoded id and secret).
func (s *suite) postForm(u string, form url.Values, user, pass string) (*response, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return s.do(req)
}

func (s *suite) postJSON(u string, body string) (*response, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return s.do(req)
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"pbac-conformance","version":"1"}}}`

// mcpPost sends one JSON-RPC message to an MCP endpoint with the token (if
// any) and extra headers.
func (s *suite) mcpPost(u, token, body string, hdr map[string]string) (*response, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return s.do(req)
}

// endpoint is an AS metadata endpoint URL, "" when absent.
func (s *suite) endpoint(name string) string {
	v, _ := s.asMeta[name].(string)
	return v
}

func absURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return u, nil
}

// strings of a JSON array member.
func stringList(v any) []string {
	arr, _ := v.([]any)
	var out []string
	for _, x := range arr {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// authParams parses a WWW-Authenticate Bearer challenge's parameters
// (RFC 6750 §3, RFC 9110 §11.2 auth-params; quoted or token values).
func authParams(h string) (scheme string, params map[string]string) {
	params = map[string]string{}
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimLeft(strings.TrimSpace(rest), ",") {
		rest = strings.TrimSpace(rest)
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		name = strings.ToLower(strings.TrimSpace(name))
		after = strings.TrimSpace(after)
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after); i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
					b.WriteByte(after[i])
					continue
				}
				if after[i] == '"' {
					break
				}
				b.WriteByte(after[i])
			}
			val, rest = b.String(), after[min(i+1, len(after)):]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			val = strings.TrimSpace(val)
		}
		params[name] = val
	}
	return scheme, params
}

// newJarClient is a browser: cookies kept, redirects not followed.
func (s *suite) newJarClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *s.http
	c.Jar = jar
	return &c
}

func containsFold(list []string, v string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, v) })
}

func splitLines(b []byte) []string { return strings.Split(string(b), "\n") }

func cutPrefix(s, p string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), p)
	return strings.TrimSpace(rest), ok
}
