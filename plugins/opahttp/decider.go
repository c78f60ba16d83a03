// Package opahttp decides through an OPA server over HTTP: the "sidecar" or
// ext_authz architecture, where policy runs in its own process (`opa run
// --server`) and every decision is a POST to its data API. The gateway
// embeds the policy as Wasm instead; this package exists so the two can be
// measured side by side (pbac bench) and so a deployment that already runs
// OPA can keep it.
//
// Decider implements the gateway's policy interface (host.Decider). Server
// starts an OPA server on a policy directory, and Binary finds or builds
// the OPA command line from the OPA module this repository already uses.
package opahttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
)

// ErrUndefined is returned when OPA answers without a result: the
// entrypoint is not defined by the loaded policy. The caller denies.
var ErrUndefined = errors.New("opahttp: decision is undefined")

// maxResponse bounds a decision response read from OPA.
const maxResponse = 4 << 20

// Decider asks an OPA server for each decision: POST
// <base>/v1/data/<entrypoint> with {"input": …}, and the result object is
// the decision. It is safe for concurrent use; connections are kept alive.
type Decider struct {
	base    string
	client  *http.Client
	version string
}

// Option configures a Decider.
type Option func(*Decider)

// WithHTTPClient sets the client the decider posts with (default: a
// keep-alive client with no environment proxy and a 5 s timeout).
func WithHTTPClient(c *http.Client) Option { return func(d *Decider) { d.client = c } }

// WithVersion sets the policy version decisions report (default
// "opa-http").
func WithVersion(v string) Option { return func(d *Decider) { d.version = v } }

// New returns a Decider for the OPA server at baseURL (e.g.
// "http://127.0.0.1:8181").
func New(baseURL string, opts ...Option) (*Decider, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("opahttp: server URL %q must be an absolute http(s) URL", baseURL)
	}
	d := &Decider{
		base:    strings.TrimSuffix(baseURL, "/"),
		version: "opa-http",
		client: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d, nil
}

// Decide evaluates entrypoint ("pbac/tool_call") on the raw JSON input.
// Any failure — transport, a non-200 answer, an undefined or malformed
// result — is an error, and the caller denies.
func (d *Decider) Decide(ctx context.Context, ep contract.Entrypoint, input []byte) (plugins.Decision, error) {
	entrypoint := string(ep)
	if !validEntrypoint(entrypoint) {
		return plugins.Decision{}, fmt.Errorf("opahttp: invalid entrypoint %q", entrypoint)
	}
	body := make([]byte, 0, len(input)+12)
	body = append(body, `{"input":`...)
	body = append(body, input...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/data/"+entrypoint, bytes.NewReader(body))
	if err != nil {
		return plugins.Decision{}, fmt.Errorf("opahttp: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return plugins.Decision{}, fmt.Errorf("opahttp: %s: %w", entrypoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return plugins.Decision{}, fmt.Errorf("opahttp: %s: reading the answer: %w", entrypoint, err)
	}
	if len(raw) > maxResponse {
		return plugins.Decision{}, fmt.Errorf("opahttp: %s: answer exceeds %d bytes", entrypoint, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return plugins.Decision{}, fmt.Errorf("opahttp: %s: HTTP %d: %.300s", entrypoint, resp.StatusCode, raw)
	}
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return plugins.Decision{}, fmt.Errorf("opahttp: %s: %w", entrypoint, err)
	}
	if len(out.Result) == 0 || string(out.Result) == "null" {
		return plugins.Decision{}, fmt.Errorf("%w: %s", ErrUndefined, entrypoint)
	}
	return plugins.ParseDecision(d.version, out.Result)
}

// Close closes the decider's idle connections.
func (d *Decider) Close() { d.client.CloseIdleConnections() }

// validEntrypoint accepts a slash-separated rule path such as
// "pbac/tool_call": letters, digits and underscores, no empty segment.
func validEntrypoint(e string) bool {
	if e == "" {
		return false
	}
	for seg := range strings.SplitSeq(e, "/") {
		if seg == "" {
			return false
		}
		for _, r := range seg {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}
