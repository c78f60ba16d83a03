package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pbac-gateway/pbac/contract"
)

// ProtocolVersion is the MCP revision the benchmark's sessions speak.
const ProtocolVersion = "2025-06-18"

// MCPTarget makes MCP tools/call requests to one Streamable HTTP endpoint.
// Each connection is one keep-alive TCP connection with its own session
// (initialize and notifications/initialized once); each call is a JSON-RPC
// POST with the tool's arguments, read to the end of its answer. The same
// request shape serves every mode, so they compare fairly.
type MCPTarget struct {
	// URL is the endpoint, e.g. http://127.0.0.1:8080/mcp/jira.
	URL string
	// Tool is the tool name as the endpoint knows it ("search_issues").
	Tool string
	// Arguments is the JSON object of arguments.
	Arguments json.RawMessage
	// Token, when set, gives the bearer token for each request.
	Token func(ctx context.Context) (string, error)
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration
	// IDs, when set, numbers the calls of every connection opened from
	// this target, so request ids are distinct across connections, not
	// only within each session.
	IDs *atomic.Int64
}

// Open implements Target.
func (t *MCPTarget) Open(ctx context.Context) (Conn, error) {
	if t.URL == "" || t.Tool == "" {
		return nil, errors.New("bench: an MCP target needs a URL and a tool")
	}
	args := t.Arguments
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	name, err := json.Marshal(t.Tool)
	if err != nil {
		return nil, err
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c := &mcpConn{
		t: t,
		client: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               nil, // 127.0.0.1 targets, never through an environment proxy
				MaxIdleConns:        1,
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				IdleConnTimeout:     5 * time.Minute,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		prefix: []byte(`{"jsonrpc":"2.0","id":`),
		suffix: []byte(`,"method":"tools/call","params":{"name":` + string(name) + `,"arguments":` + string(args) + `}}`),
	}
	initMsg := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + ProtocolVersion +
		`","capabilities":{},"clientInfo":{"name":"pbac-bench","version":"1"}}}`
	if _, err := c.post(ctx, []byte(initMsg), true); err != nil {
		c.client.CloseIdleConnections()
		return nil, fmt.Errorf("initialize %s: %w", t.URL, err)
	}
	if _, err := c.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), false); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("notifications/initialized %s: %w", t.URL, err)
	}
	return c, nil
}

type mcpConn struct {
	t              *MCPTarget
	client         *http.Client
	session        string
	prefix, suffix []byte
	id             int64
	answer         bytes.Buffer
}

// Call makes one tools/call. A non-2xx status, a JSON-RPC error or a tool
// error result is a failure.
func (c *mcpConn) Call(ctx context.Context) error {
	if c.t.IDs != nil {
		c.id = c.t.IDs.Add(1)
	} else {
		c.id++
	}
	// A fresh body each call: the transport may still hold the last one.
	body := make([]byte, 0, len(c.prefix)+len(c.suffix)+20)
	body = append(body, c.prefix...)
	body = strconv.AppendInt(body, c.id, 10)
	body = append(body, c.suffix...)
	ans, err := c.post(ctx, body, true)
	if err != nil {
		return err
	}
	switch {
	case bytes.Contains(ans, []byte(contract.DenialMetaKey)) && isDenial(ans):
		return fmt.Errorf("%w: %.200s", ErrDenied, ans)
	case bytes.Contains(ans, []byte(`"isError":true`)):
		return fmt.Errorf("%w: %.200s", ErrTool, ans)
	case !bytes.Contains(ans, []byte(`"result":`)):
		return fmt.Errorf("no result: %.200s", ans)
	}
	return nil
}

// post sends one message and returns the answer's body (an SSE stream or a
// JSON object), read whole. A message that expects no answer must get 202.
func (c *mcpConn) post(ctx context.Context, msg []byte, answer bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.URL, bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Mcp-Protocol-Version", ProtocolVersion)
	if c.session != "" {
		h.Set("Mcp-Session-Id", c.session)
	}
	if c.t.Token != nil {
		tok, err := c.t.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		h.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	c.answer.Reset()
	if _, err := c.answer.ReadFrom(io.LimitReader(resp.Body, 16<<20)); err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &StatusError{Code: resp.StatusCode, Body: bytes.Clone(bytes.TrimSpace(c.answer.Bytes()))}
	}
	if !answer && resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("HTTP %d, want 202", resp.StatusCode)
	}
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		c.session = id
	}
	return c.answer.Bytes(), nil
}

// isDenial tells whether ans (a JSON-RPC response, or an SSE stream
// ending with one) is the gateway's tool result for a call policy denied.
func isDenial(ans []byte) bool {
	if i := bytes.LastIndex(ans, []byte("data:")); i >= 0 {
		ans = bytes.TrimSpace(ans[i+len("data:"):])
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(ans, &msg) != nil {
		return false
	}
	_, ok := contract.DenialOf(msg.Result)
	return ok
}

// ErrDenied is a call policy denied, answered as a tool result (the
// gateway's denials: tool_error).
var ErrDenied = errors.New("denied by policy")

// ErrTool is a call the tool answered with an error result.
var ErrTool = errors.New("tool error")

// StatusError is a call answered with a status other than 2xx.
type StatusError struct {
	Code int
	// Body is the answer's body, trimmed.
	Body []byte
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %.200s", e.Code, e.Body) }

// Close ends the session (DELETE) and the connection.
func (c *mcpConn) Close() error {
	defer c.client.CloseIdleConnections()
	if c.session == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.t.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Mcp-Session-Id", c.session)
	req.Header.Set("Mcp-Protocol-Version", ProtocolVersion)
	if c.t.Token != nil {
		if tok, err := c.t.Token(ctx); err == nil {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil // the session ends with the connection anyway
	}
	resp.Body.Close()
	return nil
}

// PadArguments pads the first string argument (in key order) of a JSON
// arguments object with trailing spaces until the object encodes to size
// bytes. Tools that trim their arguments answer as they would unpadded,
// while the gateway and its policy see, parse and forward every byte.
func PadArguments(args json.RawMessage, size int) (json.RawMessage, error) {
	var obj map[string]any
	if err := json.Unmarshal(args, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("arguments must be a JSON object: %s", args)
	}
	enc := func() ([]byte, error) {
		var buf bytes.Buffer
		e := json.NewEncoder(&buf)
		e.SetEscapeHTML(false)
		if err := e.Encode(obj); err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
	}
	cur, err := enc()
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		return cur, nil
	}
	if size < len(cur) {
		return nil, fmt.Errorf("the arguments are already %d bytes, more than %d", len(cur), size)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s, ok := obj[k].(string); ok {
			obj[k] = s + strings.Repeat(" ", size-len(cur))
			return enc()
		}
	}
	return nil, errors.New("padding the arguments needs a string argument to pad")
}
