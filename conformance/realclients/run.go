package realclients

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

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

func runOne(ctx context.Context, cfg Config, name string, drive Driver) (Row, error) {
	var genv []string
	if setup := gatewaySetups[name]; setup != nil {
		dir, err := os.MkdirTemp("", "pbac-realclients-setup-")
		if err != nil {
			return Row{}, err
		}
		defer os.RemoveAll(dir)
		if genv, err = setup(dir); err != nil {
			return Row{}, fmt.Errorf("set up the gateway for %s: %w", name, err)
		}
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
	env := Env{Dir: cfg.Dir, Work: work, Browser: browser, Model: model, Timeout: cfg.Timeout, Log: cfg.Log}
	fmt.Fprintf(cfg.Log, "== %s against %s (stand-in model %s)\n", name, g.Base, model.URL())
	row, err := drive(ctx, env, g.Target)
	for _, r := range model.Requests() {
		fmt.Fprintf(cfg.Log, "model request: %s %s stream=%v tools=%d answer=%s\n", r.API, r.Path, r.Stream, len(r.Tools), r.Answer)
	}
	return row, err
}
