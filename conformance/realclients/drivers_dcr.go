package realclients

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/demo"
)

// DriveClaudeCodeSelfRegistered drives Claude Code added as a user adds any
// MCP server, without a client id: it registers itself (dynamic client
// registration), nobody vouches for it, and the first sign-in is refused
// on the first page, which names the pending review. An operator then
// approves the registration as claude-code through the admin API (what
// the dashboard's Pending review does), and the same client signs in
// again and calls the tools (issue 17, operator approval).
func DriveClaudeCodeSelfRegistered(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "claude")
	row := Row{Client: "Claude Code, self-registered (DCR) + operator approval", Version: Version(e.Dir, "@anthropic-ai/claude-code")}
	add := []string{"mcp", "add", "--transport", "http", serverName, t.Base + "/mcp"}
	row.Snippet = "claude " + strings.Join(add, " ")
	if t.AdminURL == "" || t.AdminToken == "" {
		return row, fmt.Errorf("pbac up printed no admin API address")
	}
	env := claudeEnv(e)
	if _, err := e.run(ctx, env, bin, add...); err != nil {
		return row, err
	}
	first := len(t.Observer.Events())
	// Refused: the login fails; what counts is what the gateway saw.
	out, _ := e.onPTY(ctx, env, shellQuote(bin)+" mcp login "+serverName)
	before := t.Observer.Events()[first:]
	id, refusal := selfRegistration(before)
	if id == "" {
		row.Registration = "no dynamic client registration was seen"
		fmt.Fprintf(e.Log, "first login:\n%s\n", plain(out))
		return row, nil
	}
	pending, err := pendingClients(ctx, t)
	if err != nil {
		return row, err
	}
	if !pending[id] {
		row.Registration = fmt.Sprintf("registered as %s, which the admin API does not list as pending", id)
		return row, nil
	}
	if !strings.Contains(refusal, "not attested") {
		row.Registration = fmt.Sprintf("registered as %s (pending), but the first sign-in was not refused as unattested: %q", id, refusal)
		return row, nil
	}
	if err := approve(ctx, t, id, "claude-code"); err != nil {
		return row, err
	}
	from := len(t.Observer.Events())
	out, err = e.onPTY(ctx, env, shellQuote(bin)+" mcp login "+serverName)
	if err != nil {
		return row, fmt.Errorf("%w after the approval: %v\n%s", errNotSignedIn, err, plain(out))
	}
	tool := "mcp__" + serverName + "__" + toolSuffix
	for p := range e.calls(ctx) {
		_, _ = e.run(ctx, env, bin, "-p", p, "--allowedTools", tool, "--output-format", "text")
	}
	approved := t
	approved.ClientID = id
	e.judge(ctx, &row, approved, from)
	if row.Registration == "pass (pre-registered id)" {
		row.Registration = fmt.Sprintf("pass (registered itself by DCR; the first sign-in was refused as %q; pending in GET /admin/clients until an operator approved it as claude-code; then the same client id)", clip(refusal))
	} else {
		row.Registration += " (after the approval)"
	}
	return row, nil
}

// selfRegistration finds, in a login's requests, the client id a
// dynamic client registration was answered with and the error the
// authorization request that followed was refused with.
func selfRegistration(events []clientcheck.Event) (id, refusal string) {
	for _, ev := range events {
		if ev.Method == http.MethodGet && strings.HasSuffix(ev.Path, "/oauth2/authorize") && ev.Query.Get("client_id") != "" {
			id = ev.Query.Get("client_id")
			if ev.AuthorizeError != "" {
				refusal = ev.AuthorizeError
			}
		}
	}
	registered := false
	for _, ev := range events {
		if ev.Method == http.MethodPost && strings.HasSuffix(ev.Path, "/register") && ev.Status == http.StatusCreated {
			registered = true
		}
	}
	if !registered {
		return "", ""
	}
	return id, refusal
}

// pendingClients are the client ids the admin API lists as pending.
func pendingClients(ctx context.Context, t Target) (map[string]bool, error) {
	var out struct {
		Clients []struct {
			ID string `json:"client_id"`
		} `json:"clients"`
	}
	if err := adminCall(ctx, t, http.MethodGet, "/admin/clients?status=pending", nil, &out); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, c := range out.Clients {
		ids[c.ID] = true
	}
	return ids, nil
}

// approve approves client id as provider, as an operator.
func approve(ctx context.Context, t Target, id, provider string) error {
	return adminCall(ctx, t, http.MethodPost, "/admin/clients/"+id+"/approve",
		map[string]string{"provider": provider, "comment": "approved by the real-client driver"}, nil)
}

// adminCall makes one admin API request and decodes a 200 answer into out.
func adminCall(ctx context.Context, t Target, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.AdminURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// claudeCodeClientID is the client id Claude Code presents where the
// authorization server advertises Client ID Metadata Documents.
const claudeCodeClientID = demo.ClaudeCodeMetadataURL

// gatewaySetups prepare `pbac up` for a driver: the environment it runs
// with, given a scratch directory that lives as long as the run.
var gatewaySetups = map[string]func(dir string) ([]string, error){
	// Claude Code by its metadata document, air-gapped: the operator pins
	// the document (written here from what Claude Code sends: its client
	// id and loopback redirect URIs on a port of its choosing) and the
	// shipped policy data maps the URL to claude-code.
	// Claude Code by its metadata document, air-gapped: the demo tenant
	// pins Claude Code's document (demo.PinnedMetadataDocuments) and the
	// shipped policy data maps its URL to claude-code; nothing is fetched.
	"claude-code-cimd": func(string) ([]string, error) { return []string{"PBAC_METADATA_DOCUMENTS_FETCH=false"}, nil },
	// Claude Code registering itself: without metadata documents
	// advertised it falls back to dynamic client registration.
	"claude-code-dcr": func(string) ([]string, error) { return []string{"PBAC_METADATA_DOCUMENTS=false"}, nil },
}

// DriveClaudeCodeCIMD drives Claude Code added as a user adds any MCP
// server, without a client id, where the authorization server takes
// Client ID Metadata Documents: Claude Code presents its document's URL as
// its client id; the demo tenant pins the document (fetching is off here,
// as air-gapped), and the shipped policy data maps the URL to claude-code.
func DriveClaudeCodeCIMD(ctx context.Context, e Env, t Target) (Row, error) {
	bin := filepath.Join(e.Dir, "node_modules", ".bin", "claude")
	row := Row{Client: "Claude Code, by its client ID metadata document (pinned)", Version: Version(e.Dir, "@anthropic-ai/claude-code")}
	add := []string{"mcp", "add", "--transport", "http", serverName, t.Base + "/mcp"}
	row.Snippet = "claude " + strings.Join(add, " ")
	env := claudeEnv(e)
	if _, err := e.run(ctx, env, bin, add...); err != nil {
		return row, err
	}
	from := len(t.Observer.Events())
	out, err := e.onPTY(ctx, env, shellQuote(bin)+" mcp login "+serverName)
	if err != nil {
		return row, fmt.Errorf("%w: %v\n%s", errNotSignedIn, err, plain(out))
	}
	tool := "mcp__" + serverName + "__" + toolSuffix
	for p := range e.calls(ctx) {
		_, _ = e.run(ctx, env, bin, "-p", p, "--allowedTools", tool, "--output-format", "text")
	}
	cimd := t
	cimd.ClientID = claudeCodeClientID
	e.judge(ctx, &row, cimd, from)
	if row.Registration == "pass (pre-registered id)" {
		row.Registration = "pass (client ID metadata document: client_id " + claudeCodeClientID + ", pinned; no registration)"
	}
	return row, nil
}
