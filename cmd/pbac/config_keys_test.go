package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/stdio"
	"github.com/pbac-gateway/pbac/wasm"
)

// TestConfigKeysAreTheFlagsOfPbacUp: every flag the configuration table
// names is a flag of pbac up (or of pbac asrv, for the issuer), with the
// table's default.
func TestConfigKeysAreTheFlagsOfPbacUp(t *testing.T) {
	up, as := newUpCommand().Flags(), newAsrvCommand().Flags()
	for _, k := range config.Keys() {
		if k.Flag == "" {
			continue
		}
		fl := up.Lookup(k.Flag)
		if fl == nil {
			fl = as.Lookup(k.Flag)
		}
		if fl == nil {
			t.Errorf("%s: neither pbac up nor pbac asrv has --%s", k.Name, k.Flag)
			continue
		}
		def := fl.DefValue
		if def == "[]" {
			def = ""
		}
		if def != k.Default {
			t.Errorf("%s: --%s defaults to %q, the table says %q", k.Name, k.Flag, def, k.Default)
		}
	}
}

// TestConfigDefaultsAreThePackagesOwn: the defaults the configuration
// shows are the ones the gateway, the stdio bridge and the policy runtime
// apply.
func TestConfigDefaultsAreThePackagesOwn(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"sessions per agent", config.DefaultSessionsPerAgent, gateway.DefaultSessionsPerAgent},
		{"stdio sessions", config.DefaultStdioSessions, stdio.DefaultSessions},
		{"stdio sessions per agent", config.DefaultStdioSessionsPerAgent, stdio.DefaultSessionsPerAgent},
	} {
		if c.got != c.want {
			t.Errorf("%s: config says %d, the package %d", c.name, c.got, c.want)
		}
	}
	if config.DefaultAccessTokenTTL != asrv.DefaultAccessTokenTTL {
		t.Errorf("access token lifetime: config says %v, asrv %v", config.DefaultAccessTokenTTL, asrv.DefaultAccessTokenTTL)
	}
	if k, _ := config.Lookup("session_idle"); mustDuration(t, k.Default) != gateway.DefaultSessionIdle {
		t.Errorf("session idle: the table's default %q, the gateway's %s", k.Default, gateway.DefaultSessionIdle)
	}
	for name, want := range map[string]string{
		"policy.decision_timeout":     plugins.DefaultDecisionTimeout.String(),
		"policy.eval_timeout":         wasm.NewConfig().EvalTimeout().String(),
		"policy.bundle_poll_interval": bundlesource.DefaultInterval.String(),
		"limits.sessions_per_agent":   strconv.Itoa(gateway.DefaultSessionsPerAgent),
	} {
		if k, _ := config.Lookup(name); k.Default != want {
			t.Errorf("%s: the table's default %q, the package's %q", name, k.Default, want)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
