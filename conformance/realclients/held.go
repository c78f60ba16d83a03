package realclients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
	"github.com/pbac-gateway/pbac/rego"
)

// The held-call probe (issue 20): alice's coding agent (tier developer)
// runs DDL, which the shipped policy holds for a DBA who is not alice
// (approval rule ddl-needs-dba). The gateway answers the held call by
// what the client can do (gateway/hold.go): input_required on 2026-07-28
// with URL elicitation in the request's _meta, -32042 on 2025-11-25 with
// URL elicitation declared at initialize, else -32010 naming the approval
// page. An approver goroutine lets bob approve DDL for the run (the
// demo's only DBA is alice, who may not approve her own agent's call:
// the data adds bob's role release to the rule's approvers) and approves the held call through the admin
// API as soon as it is pending; the stand-in model then asks for the same
// call again, which the gateway allows with the approval.
const (
	markerHeld      = "pbac-held-call"
	markerHeldRetry = "pbac-held-retry"
	heldTool        = "database_execute_ddl"
	heldGatewayTool = "database.execute_ddl"
	// heldSQL is DDL the demo database runs (it takes CREATE TABLE, DROP
	// TABLE and ALTER TABLE only: a CREATE INDEX is allowed by the gateway
	// and refused by the backend); heldDone opens its answer.
	heldSQL  = "ALTER TABLE orders ADD COLUMN region text"
	heldDone = "added column region to orders"
	// heldApprover is the person who approves: bob (analytics, release),
	// whose role release is made an approver of heldRule for the run.
	heldApprover = "bob"
	heldRole     = "release"
	heldRule     = "ddl-needs-dba"
	// heldRetryDelay is how long after the held call's result the stand-in
	// asks for it again: the approver polls every 200 ms.
	heldRetryDelay = 4 * time.Second
)

var heldPrompt = markerHeld + ": add a region column to the orders table in the database"

func heldCalls() []modelapi.Call {
	args := map[string]any{"sql": heldSQL}
	return []modelapi.Call{{Marker: markerHeld, Tool: heldTool, Args: args,
		Then: &modelapi.Call{Marker: markerHeldRetry, Tool: heldTool, Args: args, Delay: heldRetryDelay}}}
}

// HeldRow is what one client did with a held call.
type HeldRow struct {
	Driver  string `json:"driver"`
	Client  string `json:"client"`
	Version string `json:"version"`
	// Channel is how the gateway answered the held call, by its rule
	// (gateway/hold.go) from what the request declared: "input_required",
	// "-32042" or "-32010"; Declared says what that was read from.
	Channel  string `json:"channel"`
	Declared string `json:"declared"`
	// Held: the audit trail has a hold of the call for alice, with an
	// approval id; Approved: the approver granted it; RetryAllowed: a later
	// call of the same tool was allowed with that approval.
	Held         bool   `json:"held"`
	Approved     bool   `json:"approved"`
	RetryAllowed bool   `json:"retry_allowed"`
	ApprovalID   string `json:"approval_id"`
	// OpenedURL: the CLI opened the approval page in the browser (the
	// $BROWSER helper's log).
	OpenedURL bool `json:"opened_url"`
	// ModelSaw and ModelSawRetry are the tool results the CLI gave the
	// model for the held call and for the call after the approval;
	// SawURL: the first named the approval page.
	ModelSaw      string `json:"model_saw"`
	ModelSawRetry string `json:"model_saw_retry"`
	SawURL        bool   `json:"saw_url"`
	// Ran: a result the model saw says the statement ran (heldDone).
	Ran bool `json:"ran"`
	// Audit lists the audit trail's decisions on the tool for the agent.
	Audit string `json:"audit"`
	// Err is a run that could not be made (sign-in failed, …).
	Err string `json:"error,omitempty"`
}

// Passed tells whether the held call was held and, after the approval,
// the same call allowed with it: what TestRealClientsHeld holds each
// client to where it worked once (testdata/held.json).
func (r HeldRow) Passed() bool { return r.Err == "" && r.Held && r.Approved && r.RetryAllowed }

// RunHeld drives each client once against a fresh gateway through the
// held-call probe, one after the other, each bounded by perClient.
func RunHeld(ctx context.Context, cfg Config, perClient time.Duration) ([]HeldRow, error) {
	if err := Installed(cfg.Dir); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 90 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	cfg.Log = &lockedWriter{w: cfg.Log}
	var rows []HeldRow
	for _, name := range cfg.Clients {
		drive, ok := heldDriver(name)
		if !ok {
			return rows, fmt.Errorf("unknown client %q (%s, claude-code-hook)", name, strings.Join(Names(), ", "))
		}
		p := &probe{kind: probeHeld, log: func(format string, args ...any) {
			fmt.Fprintf(cfg.Log, "== "+name+" (held): "+format+"\n", args...)
		}}
		cctx, cancel := context.WithTimeout(ctx, perClient)
		row, err := runPhase(cctx, cfg, name, drive, p)
		cancel()
		h := p.held
		if h == nil {
			h = &HeldRow{}
		}
		h.Driver, h.Client, h.Version = name, row.Client, row.Version
		if err != nil {
			if ctx.Err() != nil {
				return rows, err
			}
			h.Err = clip(err.Error())
		}
		rows = append(rows, *h)
	}
	return rows, nil
}

// approver lets bob approve DDL for the run, then approves, as bob through the
// admin API, every held call of the run as soon as it is pending, until
// stopped.
type approver struct {
	t      Target
	log    func(format string, args ...any)
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	approved []string
	failed   []string
}

// startApprover changes the policy data (bob's role release may approve
// DDL) and starts polling for pending approvals. Stop it with stop.
func startApprover(ctx context.Context, t Target, log func(string, ...any)) (*approver, error) {
	if err := letApprove(ctx, t, heldRole); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &approver{t: t, log: log, cancel: cancel, done: make(chan struct{})}
	go a.loop(ctx)
	return a, nil
}

func (a *approver) stop() {
	a.cancel()
	<-a.done
}

func (a *approver) loop(ctx context.Context) {
	defer close(a.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var list struct {
			Approvals []struct {
				ID string `json:"id"`
			} `json:"approvals"`
		}
		if err := a.t.admin(ctx, http.MethodGet, "/admin/approvals?status=pending", nil, &list); err != nil {
			if ctx.Err() != nil {
				return // stopped
			}
			a.note("", err)
			continue
		}
		for _, x := range list.Approvals {
			body := fmt.Sprintf(`{"approver":%q,"comment":"the realclients held-call probe"}`, heldApprover)
			err := a.t.admin(ctx, http.MethodPost, "/admin/approvals/"+url.PathEscape(x.ID)+"/approve", strings.NewReader(body), nil)
			if err != nil && ctx.Err() != nil {
				return
			}
			a.note(x.ID, err)
		}
	}
}

func (a *approver) note(id string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil && !slices.Contains(a.failed, err.Error()):
		a.failed = append(a.failed, err.Error())
		a.log("the approver: %v", err)
	case err == nil && id != "":
		a.approved = append(a.approved, id)
		a.log("%s approved %s", heldApprover, id)
	}
}

func (a *approver) result() (approved, failed []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.approved), slices.Clone(a.failed)
}

// admin calls the admin API with the admin token; out, when set, receives
// the JSON answer of a 200.
func (t Target) admin(ctx context.Context, method, path string, body io.Reader, out any) error {
	if t.AdminURL == "" {
		return errors.New("pbac up printed no admin API address")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, t.AdminURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
		}
	}
	return nil
}

// letApprove puts the shipped policy data back with role also among the
// approvers of the held call's rule (approval_rules[heldRule]
// .approver_groups), through PUT /admin/policy/data. The demo's people
// have their roles from the password source, not from groups the data
// could map, so the rule is what the data can widen.
func letApprove(ctx context.Context, t Target, role string) error {
	raw, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		return fmt.Errorf("read the shipped policy data: %w", err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return fmt.Errorf("read the shipped policy data: %w", err)
	}
	rules, _ := data["approval_rules"].([]any)
	widened := false
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		if rule["id"] != heldRule {
			continue
		}
		groups, _ := rule["approver_groups"].([]any)
		rule["approver_groups"], widened = append(groups, role), true
	}
	if !widened {
		return fmt.Errorf("the shipped policy data has no approval rule %s", heldRule)
	}
	raw, err = json.Marshal(data)
	if err != nil {
		return err
	}
	if err := t.admin(ctx, http.MethodPut, "/admin/policy/data", strings.NewReader(string(raw)), nil); err != nil {
		return fmt.Errorf("let %s approve under %s: %w", role, heldRule, err)
	}
	return nil
}

// heldAudit is the part of an audit record the held probe reads.
type heldAudit struct {
	AuditRecord
	ApprovalID string `json:"approval_id"`
	Event      string `json:"event"`
}

// heldRecords waits (up to 5 s) for a decision of the held tool after
// the hold, and returns the decisions on it by clientID.
func heldRecords(ctx context.Context, path, clientID string) ([]heldAudit, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read the audit trail: %w", err)
		}
		var out []heldAudit
		for _, line := range strings.Split(string(raw), "\n") {
			var r heldAudit
			if json.Unmarshal([]byte(line), &r) == nil && r.Method == "tools/call" && r.Tool == heldGatewayTool && r.ClientID == clientID {
				out = append(out, r)
			}
		}
		if len(out) >= 2 || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// judgeHeld fills p.held from the audit trail, the observer's events
// (what the held call declared), the browser helper's log, the approver
// and what the model saw; its one line is p.result.
func judgeHeld(ctx context.Context, p *probe, events []clientcheck.Event, results []modelapi.ToolResult) string {
	h := &HeldRow{}
	p.held = h
	if !p.started {
		return "— (not measured: the driver made no call in the held-call run)"
	}
	recs, err := heldRecords(ctx, p.target.AuditFile, p.target.ClientID)
	if err != nil {
		h.Err = err.Error()
	}
	var audit []string
	for _, r := range recs {
		audit = append(audit, fmt.Sprintf("%s %d %s", r.Decision, r.Status, r.ApprovalID))
		switch {
		case r.Decision == "hold" && r.Subject == "alice" && r.ApprovalID != "" && h.ApprovalID == "":
			h.Held, h.ApprovalID = true, r.ApprovalID
		case r.Decision == "allow" && h.Held && r.ApprovalID == h.ApprovalID:
			h.RetryAllowed = true
		}
	}
	h.Audit = strings.Join(audit, " / ")
	if p.approver != nil {
		approved, failed := p.approver.result()
		h.Approved = h.ApprovalID != "" && slices.Contains(approved, h.ApprovalID)
		if len(failed) > 0 {
			h.Audit += " (the approver: " + strings.Join(failed, "; ") + ")"
		}
	}
	h.Channel, h.Declared = heldChannel(events[p.from:])
	if raw, err := os.ReadFile(p.browserLog); err == nil && h.ApprovalID != "" {
		h.OpenedURL = strings.Contains(string(raw), "/ui/approvals/"+h.ApprovalID)
	}
	for _, r := range results {
		switch r.Marker {
		case markerHeld:
			h.ModelSaw = r.Content
		case markerHeldRetry:
			h.ModelSawRetry = r.Content
		}
	}
	h.SawURL = h.ApprovalID != "" && strings.Contains(h.ModelSaw, "/ui/approvals/"+h.ApprovalID)
	h.Ran = strings.Contains(h.ModelSaw, heldDone) || strings.Contains(h.ModelSawRetry, heldDone)
	verdict := "held, approved, and the retry allowed"
	if !h.Passed() {
		verdict = fmt.Sprintf("held %v, approved %v, retry allowed %v", h.Held, h.Approved, h.RetryAllowed)
	}
	return fmt.Sprintf("%s (channel %s: %s; opened the approval page %v; the model saw the page %v; the model saw the statement run %v; audit: %s)",
		verdict, h.Channel, h.Declared, h.OpenedURL, h.SawURL, h.Ran, h.Audit)
}

// heldChannel is how the gateway answered the first tools/call among
// events, by its rule (gateway/hold.go), from what the request and its
// session's initialize declared.
func heldChannel(events []clientcheck.Event) (channel, declared string) {
	var call *clientcheck.Event
	for i, ev := range events {
		if strings.HasPrefix(ev.Path, "/mcp") && ev.RPC == "tools/call" {
			call = &events[i]
			break
		}
	}
	if call == nil {
		return "none", "no tools/call reached the gateway"
	}
	initURL, initProto := false, ""
	for _, ev := range events {
		if ev.RPC == "initialize" && strings.HasPrefix(ev.Path, "/mcp") {
			initURL, initProto = ev.ElicitURL, ev.Protocol
		}
	}
	declared = fmt.Sprintf("tools/call on %q, URL elicitation in its _meta %v; initialize on %q declared URL elicitation %v",
		call.Protocol, call.ElicitURL, initProto, initURL)
	switch {
	case call.Protocol >= "2026-07-28" && call.ElicitURL:
		return "input_required", declared
	case call.Protocol >= "2025-11-25" && call.Protocol < "2026-07-28" && initURL:
		// URL elicitation (and -32042) came with 2025-11-25.
		return "-32042", declared
	}
	return "-32010", declared
}

// HeldMarkdown is the table of what each client did with the held call.
func HeldMarkdown(rows []HeldRow) string {
	var b strings.Builder
	b.WriteString("| client | version | the gateway answered (channel) | what the held call declared | held → approved → retry allowed | opened the approval page | the model saw the DDL run | what the model saw for the held call | what the model saw after the approval | audit (decision, status, approval) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	yes := map[bool]string{true: "yes", false: "no"}
	for _, r := range rows {
		outcome := fmt.Sprintf("%s → %s → %s", yes[r.Held], yes[r.Approved], yes[r.RetryAllowed])
		if r.Err != "" {
			outcome += " (" + cell(r.Err) + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s | %s | %s | `%s` | `%s` | %s |\n", r.Client, r.Version, r.Channel, cell(r.Declared), outcome, yes[r.OpenedURL], yes[r.Ran],
			strings.ReplaceAll(cell(r.ModelSaw), "`", "'"), strings.ReplaceAll(cell(clip(r.ModelSawRetry)), "`", "'"), cell(r.Audit))
	}
	return b.String()
}

// heldDriver is the driver of name RunHeld takes: Drivers', or
// claude-code-hook, Claude Code with an Elicitation hook
// (DriveClaudeCodeElicitationHook).
func heldDriver(name string) (Driver, bool) {
	if name == "claude-code-hook" {
		return DriveClaudeCodeElicitationHook, true
	}
	d, ok := Drivers[name]
	return d, ok
}

// DriveClaudeCodeElicitationHook is DriveClaudeCode with what a person
// running `claude -p` unattended can configure for elicitations (Claude
// Code's documented Elicitation hook, in settings.json of its config
// dir): a command that opens a URL elicitation's page with $BROWSER and
// accepts it, logging what it was given to elicitation.log in the work
// dir. Without it, `claude -p` answers an elicitation cancel.
func DriveClaudeCodeElicitationHook(ctx context.Context, e Env, t Target) (Row, error) {
	const hook = `#!/bin/sh
# pbac realclients: Claude Code's Elicitation hook — open a URL elicitation
# with $BROWSER, accept it.
in=$(cat)
printf '%s\n' "$in" >> "$(dirname "$0")/elicitation.log"
url=$(printf '%s' "$in" | sed -n 's/.*"url" *: *"\([^"]*\)".*/\1/p')
[ -n "$url" ] && "$BROWSER" "$url" >/dev/null 2>&1
printf '{"hookSpecificOutput":{"hookEventName":"Elicitation","action":"accept"}}\n'
`
	script := filepath.Join(e.Work, "elicitation-hook.sh")
	if err := os.WriteFile(script, []byte(hook), 0o700); err != nil {
		return Row{}, fmt.Errorf("write the elicitation hook: %w", err)
	}
	settings := map[string]any{"hooks": map[string]any{"Elicitation": []any{
		map[string]any{"hooks": []any{map[string]any{"type": "command", "command": script}}}}}}
	raw, _ := json.MarshalIndent(settings, "", "  ")
	dir := filepath.Join(e.Work, ".claude")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Row{}, fmt.Errorf("make Claude Code's config dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), raw, 0o600); err != nil {
		return Row{}, fmt.Errorf("write Claude Code's settings: %w", err)
	}
	row, err := DriveClaudeCode(ctx, e, t)
	row.Client += " (Elicitation hook: open the URL, accept)"
	return row, err
}
