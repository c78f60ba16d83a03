package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pbac-gateway/pbac/contract"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pbac-gateway/pbac/connect"
)

// An AgentClient plays an agent of the demo tenant against a running
// gateway, over real HTTP: it gets its token from the authorization server
// the way an MCP client does (authorization code with PKCE, the demo user
// signing in on the sign-in page; or client credentials for a machine
// agent), and calls tools through the gateway's aggregated /mcp endpoint.
//
// Each tool call is one stateless request (MCP revision 2026-07-28): no
// session handshake spends a single-use token before the call itself, and
// the gateway's HTTP status and error body are seen exactly as sent.
type AgentClient struct {
	// BaseURL is the gateway's (and in-process authorization server's) base
	// URL, e.g. http://127.0.0.1:8080.
	BaseURL string
	// HTTP is the client used for every request (default: one with a 30 s
	// timeout). Redirects are never followed.
	HTTP *http.Client

	ids atomic.Int64
}

// AgentIdentity is who the client acts as.
type AgentIdentity struct {
	ClientID string
	// ClientSecret authenticates a machine agent (client credentials).
	ClientSecret string
	// RedirectURI is a registered redirect URI of a human agent; the code is
	// read from the redirect, which is never followed.
	RedirectURI string
	// Machine agents act as themselves; the others act for a signed-in user.
	Machine bool
}

// Token is an access token the agent obtained.
type Token struct {
	AccessToken string
	Scopes      []string
	Expiry      time.Time
}

// ClaudeCodeCallbackPort is the fixed port of the loopback redirect URI the
// demo tenant registers for agents that act for a user, so Claude Code can
// use a pre-registered client id: claude mcp add --client-id ID
// --callback-port 33418 … makes it listen on http://localhost:33418/callback.
const ClaudeCodeCallbackPort = connect.ClaudeCodeCallbackPort

// HumanRedirectURIs are the redirect URIs the demo tenant registers for an
// agent acting for a user: 127.0.0.1 on any port (RFC 8252, the scenarios'
// agents), then those of every MCP client the dashboard has a snippet for
// (connect.Clients), so each snippet works for a demo agent as printed.
func HumanRedirectURIs() []string {
	out := []string{"http://127.0.0.1/callback"}
	for _, u := range connect.AllRedirectURIs() {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// CallbackPort returns the port of a localhost …/callback redirect URI
// among uris (what claude mcp add --callback-port needs), or 0.
func CallbackPort(uris []string) int {
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Hostname() != "localhost" || u.Path != "/callback" {
			continue
		}
		if p, err := strconv.Atoi(u.Port()); err == nil && p > 0 {
			return p
		}
	}
	return 0
}

// ErrAuthorization is returned when the authorization server refuses to
// issue a token (the user denied, policy refused, bad credentials).
var ErrAuthorization = errors.New("demo: the authorization server refused")

func (a *AgentClient) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// GetToken obtains an access token for the gateway's MCP resource: as user
// (signing in with password) for a human agent, as itself for a machine
// agent. No scopes are asked for: the authorization server grants what the
// agent's tier and the user's role allow.
func (a *AgentClient) GetToken(ctx context.Context, id AgentIdentity, user, password string) (Token, error) {
	resource := strings.TrimSuffix(a.BaseURL, "/") + "/mcp"
	tokenURL := strings.TrimSuffix(a.BaseURL, "/") + "/oauth2/token"
	ctx = context.WithValue(ctx, oauth2.HTTPClient, a.noRedirects())
	var (
		tok *oauth2.Token
		err error
	)
	if id.Machine {
		if id.ClientSecret == "" {
			return Token{}, fmt.Errorf("%w: no client secret is known for machine agent %s", ErrAuthorization, id.ClientID)
		}
		cc := clientcredentials.Config{ClientID: id.ClientID, ClientSecret: id.ClientSecret, TokenURL: tokenURL,
			EndpointParams: url.Values{"resource": {resource}}}
		tok, err = cc.Token(ctx)
	} else {
		tok, err = a.codeFlow(ctx, id, user, password, resource, tokenURL)
	}
	if err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrAuthorization, err)
	}
	out := Token{AccessToken: tok.AccessToken, Expiry: tok.Expiry}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		out.Scopes = strings.Fields(s)
	}
	return out, nil
}

func (a *AgentClient) noRedirects() *http.Client {
	c := *a.httpClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// csrfInput finds the sign-in form's CSRF field on the authorization page.
var csrfInput = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// returnLink finds the link back to the client on the page of an agent
// policy refuses before anyone signs in; refusalReason its reasons.
var (
	returnLink    = regexp.MustCompile(`id="return" href="([^"]+)"`)
	refusalReason = regexp.MustCompile(`(?s)<ul id="refusal-reasons">(.*?)</ul>`)
)

// codeFlow runs the authorization code flow with PKCE (S256), signing in on
// the authorization server's page as a browser would.
func (a *AgentClient) codeFlow(ctx context.Context, id AgentIdentity, user, password, resource, tokenURL string) (*oauth2.Token, error) {
	if id.RedirectURI == "" {
		return nil, fmt.Errorf("agent %s has no redirect URI", id.ClientID)
	}
	cfg := &oauth2.Config{ClientID: id.ClientID, RedirectURL: id.RedirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: strings.TrimSuffix(a.BaseURL, "/") + "/oauth2/authorize", TokenURL: tokenURL,
			AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()[:24]
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource))

	browser := a.noRedirects()
	loc, err := SignIn(ctx, browser, authURL, user, password)
	if err != nil {
		return nil, err
	}
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("%s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		return nil, errors.New("the redirect's state does not match the request's")
	}
	if iss := q.Get("iss"); iss != "" && iss != strings.TrimSuffix(a.BaseURL, "/") {
		return nil, fmt.Errorf("the redirect comes from issuer %q, not %q (RFC 9207 mix-up)", iss, a.BaseURL)
	}
	return cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
}

// SignIn drives an authorization endpoint's sign-in page as a browser
// would: it loads the page at authURL, posts user and password with the
// page's CSRF token and approves, and returns the redirect the endpoint
// answers with (the code or the error, for the caller to read). An agent
// policy refuses whoever signs in gets no sign-in form: SignIn then follows
// the page's link back to the client, as the person would, and returns its
// access_denied. c must not follow redirects; a cookie jar is added to a
// copy of it.
func SignIn(ctx context.Context, c *http.Client, authURL, user, password string) (*url.URL, error) {
	jar, _ := cookiejar.New(nil)
	browser := *c
	browser.Jar = jar
	page, status, err := get(ctx, &browser, authURL)
	if err != nil {
		return nil, fmt.Errorf("load the sign-in page: %w", err)
	}
	if status == http.StatusForbidden {
		if m := returnLink.FindSubmatch(page); m != nil {
			return url.Parse(html.UnescapeString(string(m[1])))
		}
		if m := refusalReason.FindSubmatch(page); m != nil {
			reasons := strings.NewReplacer("<li>", "", "</li>", "; ").Replace(string(m[1]))
			return nil, fmt.Errorf("refused before sign-in: %s", html.UnescapeString(strings.TrimSuffix(strings.TrimSpace(reasons), ";")))
		}
	}
	m := csrfInput.FindSubmatch(page)
	if status != http.StatusOK || m == nil {
		return nil, fmt.Errorf("the authorization endpoint answered %d instead of a sign-in page", status)
	}
	form := url.Values{"username": {user}, "password": {password}, "csrf_token": {string(m[1])}, "decision": {"approve"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, authURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := browser.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("unknown user or wrong password for %q", user)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 {
		return nil, fmt.Errorf("sign in answered %d", resp.StatusCode)
	}
	return loc, nil
}

func get(ctx context.Context, c *http.Client, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}

// CallResult is what the gateway answered to one tools/call.
type CallResult struct {
	// Status is the HTTP status: 200 when policy allowed the call (the tool
	// itself may still have failed: Result.IsError) or when it denied it
	// and the gateway answers denials as tool results (Denied), 401 for a
	// token the gateway did not accept, 403 when policy denied (denials:
	// http_403, or a step-up).
	Status int
	// Denied is set when policy denied the call, whichever way the
	// gateway answered it.
	Denied    bool
	RequestID string
	// Result is the tool's result when the call reached the backend.
	Result *mcp.CallToolResult
	// Error is the JSON-RPC error or the OAuth error the gateway answered.
	Error string
	// Reasons are the policy's reasons for a denial.
	Reasons       []string
	PolicyVersion string
	// Held is set when policy holds the call until a person approves it.
	Held *Held
}

// Held is a call policy holds for a person's approval, as the gateway
// answered it (an input_required result asking to open the approval
// page): the page, what it says, and the requestState the retry echoes.
type Held struct {
	ApprovalID   string
	URL          string
	Message      string
	RequestState string
}

// approvalInput names the gateway's input request in an input_required
// result.
const approvalInput = "pbac_approval"

// statelessRevision is the MCP revision without sessions; the gateway's
// aggregated endpoint serves it.
const statelessRevision = "2026-07-28"

// maxResponse bounds a response the client reads.
const maxResponse = 8 << 20

// CallTool calls tool (named <backend>.<tool>) through the gateway with
// the token, as one stateless MCP request. The client says it takes URL
// elicitation, so a call policy holds for approval comes back Held.
func (a *AgentClient) CallTool(ctx context.Context, token, tool string, args map[string]any) (CallResult, error) {
	return a.callTool(ctx, token, tool, args, nil)
}

// RetryHeld calls the held call again, echoing its requestState and
// saying the person opened the approval page (MRTR's retry): once an
// approver granted it, the call goes through.
func (a *AgentClient) RetryHeld(ctx context.Context, token, tool string, args map[string]any, h *Held) (CallResult, error) {
	return a.callTool(ctx, token, tool, args, h)
}

func (a *AgentClient) callTool(ctx context.Context, token, tool string, args map[string]any, retry *Held) (CallResult, error) {
	if args == nil {
		args = map[string]any{}
	}
	params := map[string]any{"name": tool, "arguments": args, "_meta": map[string]any{
		"io.modelcontextprotocol/protocolVersion":    statelessRevision,
		"io.modelcontextprotocol/clientCapabilities": map[string]any{"elicitation": map[string]any{"url": map[string]any{}}},
	}}
	if retry != nil {
		params["requestState"] = retry.RequestState
		params["inputResponses"] = map[string]any{approvalInput: map[string]any{"action": "accept"}}
	}
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": a.ids.Add(1), "method": "tools/call", "params": params,
	})
	if err != nil {
		return CallResult{}, fmt.Errorf("encode the call: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(a.BaseURL, "/")+"/mcp", bytes.NewReader(body))
	if err != nil {
		return CallResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", statelessRevision)
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", tool)
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return CallResult{}, fmt.Errorf("call %s: %w", tool, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return CallResult{}, fmt.Errorf("read the answer to %s: %w", tool, err)
	}
	out := CallResult{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw = lastSSEData(raw)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &oe)
		out.Error = strings.TrimSpace(oe.Error + ": " + oe.Description)
		return out, nil
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Reasons       []string `json:"reasons"`
				PolicyVersion string   `json:"policy_version"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &msg); err != nil {
		out.Error = fmt.Sprintf("the gateway answered %d with a body that is not JSON-RPC", resp.StatusCode)
		return out, nil
	}
	if msg.Error != nil {
		out.Error, out.Reasons, out.PolicyVersion = msg.Error.Message, msg.Error.Data.Reasons, msg.Error.Data.PolicyVersion
		out.Denied = resp.StatusCode == http.StatusForbidden
		return out, nil
	}
	if h, ok := heldOf(msg.Result); ok {
		out.Held = h
		return out, nil
	}
	var res mcp.CallToolResult
	if d, ok := contract.DenialOf(msg.Result); ok {
		_ = json.Unmarshal(msg.Result, &res)
		out.Denied, out.Error, out.Reasons, out.PolicyVersion = true, ResultText(&res), d.Reasons, d.PolicyVersion
		return out, nil
	}
	if err := json.Unmarshal(msg.Result, &res); err != nil {
		out.Error = "the tool result could not be decoded: " + err.Error()
		return out, nil
	}
	out.Result = &res
	return out, nil
}

// heldOf reads an input_required result asking to open the approval page.
func heldOf(result json.RawMessage) (*Held, bool) {
	var r struct {
		ResultType    string `json:"resultType"`
		InputRequests map[string]struct {
			Params struct {
				Mode, Message, URL string
			} `json:"params"`
		} `json:"inputRequests"`
		RequestState string `json:"requestState"`
	}
	if json.Unmarshal(result, &r) != nil || r.ResultType != "input_required" {
		return nil, false
	}
	in, ok := r.InputRequests[approvalInput]
	if !ok || in.Params.URL == "" {
		return nil, false
	}
	return &Held{ApprovalID: path.Base(in.Params.URL), URL: in.Params.URL, Message: in.Params.Message, RequestState: r.RequestState}, true
}

// lastSSEData returns the data of the last event of an SSE body.
func lastSSEData(b []byte) []byte {
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxResponse)
	for sc.Scan() {
		if d, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:")); ok {
			last = bytes.Clone(bytes.TrimSpace(d))
		}
	}
	return last
}

// ResultText is the text of a tool result's content, joined.
func ResultText(r *mcp.CallToolResult) string {
	if r == nil {
		return ""
	}
	var parts []string
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// ClaudeCodeMetadataURL is the client id Claude Code presents where the
// authorization server advertises Client ID Metadata Documents: the URL of
// its published document (as Claude Code 2.1.332 sends it).
const ClaudeCodeMetadataURL = "https://claude.ai/oauth/claude-code-client-metadata"

// PinnedMetadataDocuments are the documents the demo tenant pins, so that
// Claude Code added without a client id works with no network beyond
// loopback: Claude Code's, as the demo's operator would pin it — its
// client id and the loopback redirect URIs it uses on a port of its
// choosing (RFC 8252 §7.3). The shipped policy data maps the URL to the
// claude-code provider (agents.cimd_providers). Outside the demo an
// operator pins documents in clients.metadata_documents.pinned_dir or lets
// the server fetch them.
func PinnedMetadataDocuments() map[string][]byte {
	doc, _ := json.Marshal(map[string]any{
		"client_id": ClaudeCodeMetadataURL, "client_name": "Claude Code",
		"redirect_uris":  []string{"http://localhost/callback", "http://127.0.0.1/callback"},
		"grant_types":    []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "token_endpoint_auth_method": "none",
	})
	return map[string][]byte{ClaudeCodeMetadataURL: doc}
}
