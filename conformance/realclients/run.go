package realclients

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// Driver drives one CLI against a running gateway.
type Driver func(context.Context, Env, Target) (Row, error)

// Drivers are the CLIs this package drives, by the name
// `pbac conformance client --client` takes.
var Drivers = map[string]Driver{
	"claude-code":      DriveClaudeCode,
	"claude-code-cimd": DriveClaudeCodeCIMD,
	"claude-code-dcr":  DriveClaudeCodeSelfRegistered,
	"codex":            DriveCodex,
	"gemini":           DriveGemini,
	"inspector":        DriveInspector,
	"inspector-web":    DriveInspectorWeb,
	"opencode":         DriveOpenCode,
}

// Names are the drivers' names, sorted.
func Names() []string {
	var out []string
	for n := range Drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Config configures Run.
type Config struct {
	// Dir is conformance/realclients with node_modules installed.
	Dir string
	// Binary is the pbac binary run as `pbac up`.
	Binary string
	// Clients are the drivers to run, by name.
	Clients []string
	// Timeout bounds each process a driver runs (default 90 s).
	Timeout time.Duration
	// AccessTokenTTL is the gateway's access token lifetime
	// (PBAC_ACCESS_TOKEN_TTL; default DefaultAccessTokenTTL) in each
	// driver's second run, which calls once the token it signed in with
	// has expired.
	AccessTokenTTL time.Duration
	// Log receives the commands, their output and the stand-in's requests
	// (nil: discarded).
	Log io.Writer
}

// Run drives each client against a fresh gateway and stand-in model, one
// after the other (Claude Code's callback port is fixed), and returns a
// row per client. An error is a run that could not be made; a step that
// failed is in the row.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if err := Installed(cfg.Dir); err != nil {
		return nil, err
	}
	if err := Runnable(ctx, cfg.Dir); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 90 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	// The gateway's stderr is copied into the log by exec's own goroutine
	// while the driver writes the commands it runs: one lock for both.
	cfg.Log = &lockedWriter{w: cfg.Log}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	var rows []Row
	for _, name := range cfg.Clients {
		drive, ok := Drivers[name]
		if !ok {
			return rows, fmt.Errorf("unknown client %q (%s)", name, strings.Join(Names(), ", "))
		}
		row, err := runOne(ctx, cfg, name, drive)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// runOne drives a client against a fresh gateway for each of its runs:
// once with the gateway's defaults, for the steps from discovery to the
// denied call; then once per probe, each a run of its own (probes.go):
// the refresh (access tokens of cfg.AccessTokenTTL, one call once the
// token has expired), the step-up (the metadata advertises drive:read
// alone, and the call writes a file) and a new session after a 404
// (sessions end after 2 s idle, and two calls of one invocation are 5 s
// apart). Apart, a CLI that refreshes ahead of expiry (Claude Code, Codex
// and Gemini CLI do, minutes ahead) keeps the token it signed in with for
// the first run's steps, and no probe can change them.
func runOne(ctx context.Context, cfg Config, name string, drive Driver) (Row, error) {
	row, err := runPhase(ctx, cfg, name, drive, nil)
	row.Driver = name
	if err != nil {
		return row, err
	}
	for _, pr := range []struct {
		kind   probeKind
		into   *string
		failed string
	}{
		{probeRefresh, &row.Refresh, fmt.Sprintf("its run with access tokens of %s failed", cfg.AccessTokenTTL)},
		{probeStepUp, &row.StepUp, "its step-up run failed"},
		{probeSession, &row.NewSession, fmt.Sprintf("its run with sessions idle for %s failed", sessionIdle)},
	} {
		if why, ok := notMeasured[pr.kind][name]; ok {
			*pr.into = "— (not measured: " + why + ")"
			continue
		}
		p := &probe{kind: pr.kind, ttl: cfg.AccessTokenTTL,
			log: func(format string, args ...any) {
				fmt.Fprintf(cfg.Log, "== "+name+" ("+pr.kind.String()+"): "+format+"\n", args...)
			}}
		if _, err := runPhase(ctx, cfg, name, drive, p); err != nil {
			if ctx.Err() != nil {
				return row, err
			}
			*pr.into = pr.failed + ": " + clip(err.Error())
			continue
		}
		*pr.into = p.result
	}
	return row, nil
}

// notMeasured are, per probe, the drivers with no run of it, and why.
var notMeasured = map[probeKind]map[string]string{
	probeRefresh: {
		"inspector-web": "the web UI's script signs in and calls in one page session and does not wait for the token to expire; the Inspector's CLI row measures the refresh of the same OAuth code",
	},
	probeStepUp: {
		"inspector-web": "the web UI's script calls only the tools the Tools tab lists, and a token of drive:read lists no write; the Inspector's CLI row tries the step-up with the same OAuth code",
	},
	probeSession: {
		"inspector":     "each run of Inspector's CLI is one request in a session of its own; none outlives the gateway's idle expiry",
		"inspector-web": "the web UI's script makes its calls within seconds of connecting, and a session that ends after a pause is not scripted",
	},
}

// runPhase drives a client once against a fresh gateway; with a probe p,
// the gateway is set up for it (p.gatewayEnv) and the driver makes p's
// call alone, which p.judge judges.
func runPhase(ctx context.Context, cfg Config, name string, drive Driver, p *probe) (Row, error) {
	var genv []string
	if p != nil {
		genv = append(genv, p.gatewayEnv()...)
	}
	if setup := gatewaySetups[name]; setup != nil {
		dir, err := os.MkdirTemp("", "pbac-realclients-setup-")
		if err != nil {
			return Row{}, err
		}
		defer os.RemoveAll(dir)
		more, err := setup(dir)
		if err != nil {
			return Row{}, fmt.Errorf("set up the gateway for %s: %w", name, err)
		}
		genv = append(genv, more...)
	}
	if len(genv) > 0 {
		fmt.Fprintf(cfg.Log, "== %s: pbac up with %s\n", name, strings.Join(genv, " "))
	}
	g, err := StartGateway(ctx, cfg.Binary, cfg.Log, genv...)
	if err != nil {
		return Row{}, err
	}
	defer g.Close()
	model, err := modelapi.Start(Calls())
	if err != nil {
		return Row{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = model.Close(cctx)
	}()
	work, err := os.MkdirTemp("", "pbac-realclients-"+name+"-")
	if err != nil {
		return Row{}, err
	}
	defer os.RemoveAll(work)
	browser, err := BrowserHelper(work)
	if err != nil {
		return Row{}, err
	}
	if p != nil {
		p.obs = g.Observer
	}
	if p != nil && p.kind == probeHeld {
		p.target, p.browserLog = g.Target, filepath.Join(work, "browser.log")
		if p.approver, err = startApprover(ctx, g.Target, p.log); err != nil {
			return Row{}, err
		}
		defer p.approver.stop()
	}
	env := Env{Dir: cfg.Dir, Work: work, Browser: browser, Model: model, Timeout: cfg.Timeout, Log: cfg.Log, probe: p}
	fmt.Fprintf(cfg.Log, "== %s against %s (stand-in model %s)\n", name, g.Base, model.URL())
	began := time.Now()
	row, err := drive(ctx, env, g.Target)
	row.Snippet = DocSnippet(row.Snippet, g.Target)
	if err == nil && p != nil && p.kind == probeHeld {
		p.approver.stop()
		p.result = judgeHeld(ctx, p, g.Observer.Events(), model.Results())
		p.log("%s", p.result)
	} else if err == nil && p != nil {
		p.result = p.judge(g.Observer.Events(), model.Requests(), model.Results())
	}
	fmt.Fprintf(cfg.Log, "== %s took %s\n", name, time.Since(began).Round(time.Second))
	logTokenRequests(cfg.Log, g.Observer.Events())
	for _, r := range model.Requests() {
		fmt.Fprintf(cfg.Log, "model request: %s %s stream=%v tools=%d answer=%s\n", r.API, r.Path, r.Stream, len(r.Tools), r.Answer)
	}
	return row, err
}

// logTokenRequests prints the token and registration requests the gateway
// saw, with when each arrived and, for a refresh, how long after the first
// refresh with the same refresh token (the gap a rotation grace period,
// asrv.refresh_reuse_grace, must cover).
func logTokenRequests(w io.Writer, events []clientcheck.Event) {
	var first time.Time
	firstUse := map[string]time.Time{}
	for _, ev := range events {
		if !strings.HasSuffix(ev.Path, "/oauth2/token") && !strings.HasSuffix(ev.Path, "/register") {
			continue
		}
		if first.IsZero() {
			first = ev.At
		}
		reuse := ""
		if rt := ev.Form.Get("refresh_token"); rt != "" {
			if at, ok := firstUse[rt]; ok {
				reuse = fmt.Sprintf(" (its refresh token first presented %s earlier)", ev.At.Sub(at).Round(time.Millisecond))
			} else {
				firstUse[rt] = ev.At
			}
		}
		fmt.Fprintf(w, "gateway saw: +%s %s %s grant_type=%s → %d %s%s\n", ev.At.Sub(first).Round(time.Millisecond),
			ev.Method, ev.Path, ev.Form.Get("grant_type"), ev.Status, ev.OAuthError, reuse)
	}
}

// lockedWriter serializes writes to w from the goroutines of one run.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
