package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/conformance/policydiff"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
)

// runConformance executes `pbac conformance …` in-process.
func runConformance(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newConformanceCommand()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true // as under the root command
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func writeBundle(t *testing.T, b *rego.Bundle) string {
	t.Helper()
	var buf bytes.Buffer
	if err := b.WriteTarGz(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConformancePolicy: the bundle pbac policy build writes agrees on
// every entrypoint; one whose sources say otherwise than its Wasm fails
// with exit status 1 and shows the input; one without sources says what to
// do.
func TestConformancePolicy(t *testing.T) {
	ctx := context.Background()
	shipped, err := rego.BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := writeBundle(t, shipped)

	tampered := &rego.Bundle{Wasm: shipped.Wasm, Data: shipped.Data, Modules: map[string][]byte{}}
	for p, src := range shipped.Modules {
		tampered.Modules[p] = src
	}
	// The reference lets everybody see every requested tool.
	tampered.Modules["list.rego"] = []byte(strings.Replace(string(shipped.Modules["list.rego"]),
		"list_tools := sort({t | some t in list_input; list_visible(t)}) if list_allow else := []",
		"list_tools := sort({t | some t in list_input}) if list_allow else := []", 1))
	if bytes.Equal(tampered.Modules["list.rego"], shipped.Modules["list.rego"]) {
		t.Fatal("list.rego changed; adjust this test")
	}
	bad := writeBundle(t, tampered)
	bare := writeBundle(t, &rego.Bundle{Wasm: shipped.Wasm, Data: shipped.Data})

	policyDir := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(policyDir, rego.Sources()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		wantExit int // 0, 1, or -1 for another error
		want     []string
	}{
		{"shipped bundle", []string{"policy", good, "--inputs", "40"}, 0,
			[]string{"pbac/tool_call", "pbac/anonymous", "ok: 8 entrypoints", "no input was allowed"}},
		{"policy directory", []string{"policy", policyDir, "--inputs", "20"}, 0, []string{"ok: 8 entrypoints"}},
		{"sources and Wasm disagree", []string{"policy", bad, "--inputs", "300"}, 1,
			[]string{"pbac/list disagreement 1 of", "decisions differ", "input: {", "FAIL:"}},
		{"no sources", []string{"policy", bare, "--inputs", "10"}, -1, []string{"--source"}},
		{"no sources, named", []string{"policy", bare, "--inputs", "20", "--source", policyDir}, 0, []string{"ok: 8 entrypoints"}},
		{"not a bundle", []string{"policy", policyDir + "/data.json"}, -1, []string{"not gzip"}},
		{"bad inputs flag", []string{"policy", good, "--inputs", "0"}, -1, []string{"--inputs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runConformance(t, tt.args...)
			t.Logf("pbac conformance %s\n%s", strings.Join(tt.args, " "), out)
			var exit exitError
			switch {
			case tt.wantExit == 0 && err != nil:
				t.Fatalf("err = %v\n%s", err, out)
			case tt.wantExit > 0 && (!errors.As(err, &exit) || exit.code != tt.wantExit):
				t.Fatalf("err = %v, want exit status %d\n%s", err, tt.wantExit, out)
			case tt.wantExit < 0 && (err == nil || errors.As(err, &exit)):
				t.Fatalf("err = %v, want an error\n%s", err, out)
			}
			text := out
			if err != nil {
				text += err.Error()
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestConformancePolicyJSON(t *testing.T) {
	out, err := runConformance(t, "policy", "--inputs", "10", "--json", "--seed", "5")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var rep policydiff.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !rep.OK() || len(rep.Results) != len(contract.Names()) || rep.Revision == "" {
		t.Fatalf("%+v", rep)
	}
}
