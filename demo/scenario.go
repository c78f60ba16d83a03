package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A Scenario is a scripted sequence of real tool calls through the gateway,
// told in plain words: the narrative demo. What each call returns is
// decided by the live policy; nothing here says what the outcome must be.
type Scenario struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Story string `json:"story"`
	// FailureMode is 1-5 for the failure mode of DESIGN.md the scenario
	// shows, 0 otherwise.
	FailureMode int `json:"failure_mode"`
	// Agent is the demo agent's name; User the demo user it acts for ("" for
	// a machine agent).
	Agent string `json:"agent"`
	User  string `json:"user"`
	Steps []Step `json:"steps"`
}

// Step kinds.
const (
	// StepCall is a tool call through the gateway.
	StepCall = "call"
	// StepRepeat repeats the previous call with the same token.
	StepRepeat = "repeat"
	// StepPolicy is an operator's change of policy data, undone when the
	// scenario ends.
	StepPolicy = "policy"
	// StepApprove is a demo user deciding the approval the last held call
	// waits for, as they would in the dashboard; the next repeat retries
	// the held call.
	StepApprove = "approve"
)

// Step is one step of a scenario.
type Step struct {
	Kind  string         `json:"kind"`
	Title string         `json:"title"`
	Tool  string         `json:"tool,omitempty"`
	Args  map[string]any `json:"args,omitempty"`
	// Revoke removes one access from a tier's grants (a StepPolicy).
	Revoke *Revoke `json:"revoke,omitempty"`
	// As is the demo user who decides (a StepApprove), Comment what they
	// write, and Deny whether they refuse rather than approve.
	As      string `json:"as,omitempty"`
	Comment string `json:"comment,omitempty"`
	Deny    bool   `json:"deny,omitempty"`
}

// Revoke names one access of one resource in one tier's grants.
type Revoke struct {
	Tier     string `json:"tier"`
	Resource string `json:"resource"`
	Access   string `json:"access"`
}

//go:embed scenarios.json
var scenariosJSON []byte

// LiveTestID is the scenario of the onboarding's live test.
const LiveTestID = "live-test"

// Scenarios returns the demo's scenarios, in order.
func Scenarios() ([]Scenario, error) {
	var out []Scenario
	dec := json.NewDecoder(bytes.NewReader(scenariosJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("demo: scenarios.json: %w", err)
	}
	seen := map[string]bool{}
	for _, sc := range out {
		if err := sc.validate(); err != nil {
			return nil, fmt.Errorf("demo: scenario %q: %w", sc.ID, err)
		}
		if seen[sc.ID] {
			return nil, fmt.Errorf("demo: scenario %q appears twice", sc.ID)
		}
		seen[sc.ID] = true
	}
	return out, nil
}

func (sc *Scenario) validate() error {
	if sc.ID == "" || sc.Title == "" || sc.Agent == "" || len(sc.Steps) == 0 {
		return errors.New("id, title, agent and steps are required")
	}
	for i, st := range sc.Steps {
		switch st.Kind {
		case StepCall:
			if _, _, ok := strings.Cut(st.Tool, "."); !ok {
				return fmt.Errorf("step %d: tool must be <backend>.<tool>", i)
			}
			for _, v := range st.Args {
				s, _ := v.(string)
				if n, _, ok := stepRef(s); ok && (n >= i || sc.Steps[n].Kind != StepCall) {
					return fmt.Errorf("step %d: %s does not name an earlier call", i, s)
				}
			}
		case StepRepeat:
			if !slices.ContainsFunc(sc.Steps[:i], func(s Step) bool { return s.Kind == StepCall }) {
				return fmt.Errorf("step %d repeats a call but none comes before it", i)
			}
		case StepPolicy:
			if st.Revoke == nil || st.Revoke.Tier == "" || st.Revoke.Resource == "" || st.Revoke.Access == "" {
				return fmt.Errorf("step %d: a policy step needs revoke.tier, .resource and .access", i)
			}
		case StepApprove:
			if st.As == "" {
				return fmt.Errorf("step %d: an approve step needs as (the demo user who decides)", i)
			}
			if !slices.ContainsFunc(sc.Steps[:i], func(s Step) bool { return s.Kind == StepCall }) {
				return fmt.Errorf("step %d decides an approval but no call comes before it", i)
			}
		default:
			return fmt.Errorf("step %d: unknown kind %q", i, st.Kind)
		}
	}
	return nil
}

// Event is one line of a scenario run's report, as it happens.
type Event struct {
	Type string `json:"type"` // "token", "step", "done" or "error"

	// token
	Agent     string   `json:"agent,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	User      string   `json:"user,omitempty"`
	Tier      string   `json:"tier,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	ExpiresIn int64    `json:"expires_in,omitempty"`
	SingleUse bool     `json:"single_use,omitempty"`

	// step
	Index         int     `json:"index"`
	Kind          string  `json:"kind,omitempty"`
	Title         string  `json:"title,omitempty"`
	Tool          string  `json:"tool,omitempty"`
	ArgsGist      string  `json:"args_gist,omitempty"`
	Status        int     `json:"status,omitempty"`
	Decision      string  `json:"decision,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	Summary       string  `json:"summary,omitempty"`
	TookMS        float64 `json:"took_ms,omitempty"`
	PolicyVersion string  `json:"policy_version,omitempty"`
	RequestID     string  `json:"request_id,omitempty"`
	// ApprovalID and ApprovalURL name the approval a held call waits for
	// (Decision "hold"), or the one an approve step decided.
	ApprovalID  string `json:"approval_id,omitempty"`
	ApprovalURL string `json:"approval_url,omitempty"`

	// done
	Allowed  int    `json:"allowed,omitempty"`
	Denied   int    `json:"denied,omitempty"`
	Held     int    `json:"held,omitempty"`
	Restored string `json:"restored_policy_version,omitempty"`

	Error string `json:"error,omitempty"`
}

// PolicyEditor changes policy data for a scenario's policy steps.
type PolicyEditor interface {
	// PolicyData returns the active policy data and its version.
	PolicyData() (data []byte, version string, err error)
	// SetPolicyData activates a data-only version and returns its version.
	SetPolicyData(ctx context.Context, data []byte, source string) (version string, err error)
}

// Approver decides approvals for a scenario's approve steps, as the demo
// user would in the dashboard; an error is the refusal (not an approver,
// the requester's own call).
type Approver interface {
	Decide(ctx context.Context, approvalID, user string, approve bool, comment string) error
}

// Runner runs scenarios against a gateway.
type Runner struct {
	Client *AgentClient
	// Policy makes the policy steps; without it they fail.
	Policy PolicyEditor
	// Approver makes the approve steps; without it they fail.
	Approver Approver
}

// RunOptions say who runs a scenario.
type RunOptions struct {
	AgentName string
	Agent     AgentIdentity
	// User and Password sign in for a human agent.
	User, Password string
	// Tier and SingleUse describe the agent in the report.
	Tier      string
	SingleUse bool
	// Pace is the pause between steps, so that a person can follow.
	Pace time.Duration
}

// Run runs sc and reports each step to emit as it happens. It returns an
// error only when the run could not start (no token); a denied call is a
// result, not an error. A policy change the scenario made is undone before
// Run returns, unless someone changed the policy again in the meantime.
func (r *Runner) Run(ctx context.Context, sc Scenario, opt RunOptions, emit func(Event)) error {
	tok, err := r.Client.GetToken(ctx, opt.Agent, opt.User, opt.Password)
	if err != nil {
		emit(Event{Type: "error", Error: err.Error()})
		return err
	}
	user := opt.User
	if opt.Agent.Machine {
		user = ""
	}
	te := Event{Type: "token", Agent: opt.AgentName, ClientID: opt.Agent.ClientID, User: user, Tier: opt.Tier,
		Scopes: tok.Scopes, SingleUse: opt.SingleUse}
	if !tok.Expiry.IsZero() {
		te.ExpiresIn = int64(time.Until(tok.Expiry).Round(time.Second) / time.Second)
	}
	emit(te)

	runID := fmt.Sprintf("%06x", time.Now().UnixNano()&0xffffff)
	results := make([]map[string]any, len(sc.Steps)) // each call's structured result
	var (
		lastTool          string
		lastArgs          map[string]any
		allowed, denied   int
		held              int
		lastHeld          *Held
		restore           []byte
		changedTo, source string
	)
	defer func() {
		done := Event{Type: "done", Allowed: allowed, Denied: denied, Held: held}
		if restore != nil {
			if v, err := r.restore(context.WithoutCancel(ctx), restore, changedTo, source); err != nil {
				done.Error = err.Error()
			} else {
				done.Restored = v
			}
		}
		emit(done)
	}()
	for i := range sc.Steps {
		st := sc.Steps[i]
		if i > 0 && opt.Pace > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(opt.Pace):
			}
		}
		ev := Event{Type: "step", Index: i, Kind: st.Kind, Title: st.Title}
		switch st.Kind {
		case StepPolicy:
			if restore == nil {
				if restore, _, err = r.policyData(); err != nil {
					ev.Decision, ev.Reason = "error", err.Error()
					emit(ev)
					continue
				}
			}
			source = "demo scenario " + sc.ID
			v, err := r.revoke(ctx, st.Revoke, source)
			if err != nil {
				ev.Decision, ev.Reason = "error", err.Error()
			} else {
				changedTo, ev.PolicyVersion = v, v
				ev.Summary = fmt.Sprintf("policy version %s is live: tier %s no longer grants %s:%s", short(v),
					st.Revoke.Tier, st.Revoke.Resource, st.Revoke.Access)
			}
			emit(ev)
			continue
		case StepApprove:
			r.approve(ctx, st, lastHeld, &ev)
			emit(ev)
			continue
		case StepRepeat:
			st.Tool, st.Args = lastTool, lastArgs
		}
		if st.Kind == StepCall {
			var err error
			if st.Args, err = expand(st.Args, runID, results); err != nil {
				ev.Tool, ev.Decision, ev.Reason = st.Tool, "error", err.Error()
				emit(ev)
				continue
			}
		}
		lastTool, lastArgs = st.Tool, st.Args
		ev.Tool, ev.ArgsGist = st.Tool, ArgsGist(st.Args)
		start := time.Now()
		var res CallResult
		if st.Kind == StepRepeat && lastHeld != nil {
			// The retry of a held call, as the client makes it once the
			// person opened the approval page.
			res, err = r.Client.RetryHeld(ctx, tok.AccessToken, st.Tool, st.Args, lastHeld)
		} else {
			res, err = r.Client.CallTool(ctx, tok.AccessToken, st.Tool, st.Args)
		}
		lastHeld = nil
		ev.TookMS = float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			ev.Decision, ev.Reason = "error", err.Error()
			emit(ev)
			continue
		}
		ev.Status, ev.RequestID, ev.PolicyVersion = res.Status, res.RequestID, res.PolicyVersion
		switch {
		case res.Held != nil:
			ev.Decision, ev.Reason = "hold", res.Held.Message
			ev.ApprovalID, ev.ApprovalURL = res.Held.ApprovalID, res.Held.URL
			lastHeld = res.Held
			held++
		case res.Status == 200 && res.Result != nil:
			ev.Decision = "allow"
			results[i], _ = res.Result.StructuredContent.(map[string]any)
			ev.Summary = gist(ResultText(res.Result), 240)
			if res.Result.IsError {
				ev.Summary = "the tool refused: " + ev.Summary
			}
			allowed++
		case res.Status == 200 && !res.Denied:
			ev.Decision, ev.Reason = "error", res.Error
		default: // denied (a 403, or a tool result saying so), or refused
			ev.Decision = "deny"
			ev.Reason = res.Error
			if len(res.Reasons) > 0 {
				ev.Reason = strings.Join(res.Reasons, "; ")
			}
			denied++
		}
		emit(ev)
	}
	return nil
}

// approve makes an approve step: st.As decides the approval the last
// held call waits for.
func (r *Runner) approve(ctx context.Context, st Step, h *Held, ev *Event) {
	verb := "approves"
	if st.Deny {
		verb = "denies"
	}
	switch {
	case h == nil:
		ev.Decision, ev.Reason = "error", "no held call waits for an approval"
		return
	case r.Approver == nil:
		ev.Decision, ev.Reason = "error", "this gateway does not let the demo decide approvals"
		return
	}
	ev.ApprovalID, ev.ApprovalURL = h.ApprovalID, h.URL
	if err := r.Approver.Decide(ctx, h.ApprovalID, st.As, !st.Deny, st.Comment); err != nil {
		ev.Decision, ev.Reason = "deny", fmt.Sprintf("%s may not decide it: %v", st.As, err)
		return
	}
	ev.Decision, ev.Summary = "allow", fmt.Sprintf("%s %s %s", st.As, verb, h.ApprovalID)
	if st.Comment != "" {
		ev.Summary += ": " + st.Comment
	}
}

func (r *Runner) policyData() ([]byte, string, error) {
	if r.Policy == nil {
		return nil, "", errors.New("this gateway does not let the demo change policy data")
	}
	return r.Policy.PolicyData()
}

// revoke removes rv.Access from data.tiers[rv.Tier].grants[rv.Resource].
func (r *Runner) revoke(ctx context.Context, rv *Revoke, source string) (string, error) {
	raw, _, err := r.policyData()
	if err != nil {
		return "", err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return "", fmt.Errorf("the active policy data is not a JSON object: %w", err)
	}
	tiers, _ := data["tiers"].(map[string]any)
	tier, _ := tiers[rv.Tier].(map[string]any)
	grants, _ := tier["grants"].(map[string]any)
	accs, _ := grants[rv.Resource].([]any)
	if grants == nil {
		return "", fmt.Errorf("the policy data has no tier %q with grants", rv.Tier)
	}
	kept := slices.DeleteFunc(slices.Clone(accs), func(a any) bool { return a == rv.Access })
	grants[rv.Resource] = kept
	out, err := json.Marshal(data)
	if err != nil {
		return "", err
	}
	return r.Policy.SetPolicyData(ctx, out, source)
}

// restore puts the original data back if the version the scenario made is
// still the active one.
func (r *Runner) restore(ctx context.Context, original []byte, changedTo, source string) (string, error) {
	_, active, err := r.policyData()
	if err != nil {
		return "", err
	}
	if changedTo == "" || active != changedTo {
		return "", fmt.Errorf("the policy changed again since the scenario's change (now %s): left as it is", short(active))
	}
	return r.Policy.SetPolicyData(ctx, original, source+" (undone)")
}

// expand replaces "{run}" in string arguments with the run's id, so that a
// scenario run twice creates two things rather than colliding with itself,
// and an argument that is exactly "{step<N>.<field>}" with that field of
// step N's structured result (the merge request a step opened, say).
func expand(args map[string]any, runID string, results []map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(args))
	for k, v := range args {
		switch v := v.(type) {
		case string:
			if n, field, ok := stepRef(v); ok {
				var got any
				if n < len(results) && results[n] != nil {
					got = results[n][field]
				}
				if got == nil {
					return nil, fmt.Errorf("argument %s needs %s, which step %d did not return", k, field, n)
				}
				out[k] = got
				continue
			}
			out[k] = strings.ReplaceAll(v, "{run}", runID)
		case map[string]any:
			sub, err := expand(v, runID, results)
			if err != nil {
				return nil, err
			}
			out[k] = sub
		default:
			out[k] = v
		}
	}
	return out, nil
}

// stepRef reads "{step<N>.<field>}".
func stepRef(s string) (n int, field string, ok bool) {
	inner, ok := strings.CutPrefix(s, "{step")
	if !ok {
		return 0, "", false
	}
	inner, ok = strings.CutSuffix(inner, "}")
	if !ok {
		return 0, "", false
	}
	num, field, ok := strings.Cut(inner, ".")
	if !ok || field == "" {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, "", false
	}
	return n, field, true
}

// ArgsGist renders arguments in one short line: key=value, sorted by key.
func ArgsGist(args map[string]any) string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := args[k]
		var s string
		switch v := v.(type) {
		case string:
			s = v
		default:
			b, _ := json.Marshal(v)
			s = string(b)
		}
		parts = append(parts, k+"="+gist(s, 60))
	}
	return gist(strings.Join(parts, ", "), 200)
}

// gist is s on one line, cut to at most n runes.
func gist(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
