package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/conformance/policydiff"
	"github.com/pbac-gateway/pbac/rego"
)

// newConformanceCommand groups the conformance suites: `policy` here;
// `server` and `client` (the MCP authorization suites) join it.
func newConformanceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Check policies, servers and clients against the standards this gateway follows",
	}
	cmd.AddCommand(newConformancePolicyCommand(), newConformanceServerCommand(), newConformanceClientCommand())
	return cmd
}

type conformancePolicyFlags struct {
	inputs  int
	seed    uint64
	source  string
	jsonOut bool
}

func newConformancePolicyCommand() *cobra.Command {
	var f conformancePolicyFlags
	cmd := &cobra.Command{
		Use:   "policy [BUNDLE|DIR]",
		Short: "Check that a policy bundle's Wasm decides exactly as OPA's own evaluator",
		Long: `Loads a policy bundle (pbac policy build -o …), runs its Wasm module in this
gateway's engine and the Rego sources it carries in OPA's own evaluator
(topdown), both over the bundle's data, on generated inputs for every
entrypoint of the policy contract — drawn from the bundle's data: its agents,
roles, scopes and catalogued tools, with broken and mistyped fields mixed in,
some written as a client that escapes non-ASCII writes them — and on the
bundle's own decision vectors. It prints agreements per entrypoint
and exits 1 on any disagreement, so a bundle can be checked before it is
activated.

DIR compiles a policy directory first; no argument checks the shipped policy.
A bundle built without its Rego sources needs --source DIR.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConformancePolicy(cmd, args, f)
		},
	}
	cmd.Flags().IntVar(&f.inputs, "inputs", 1000, "generated inputs per entrypoint")
	cmd.Flags().Uint64Var(&f.seed, "seed", 1, "generator seed (the same seed draws the same inputs)")
	cmd.Flags().StringVar(&f.source, "source", "", "policy directory holding the bundle's Rego sources, for a bundle that carries none")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print the report as JSON")
	return cmd
}

func runConformancePolicy(cmd *cobra.Command, args []string, f conformancePolicyFlags) error {
	if f.inputs <= 0 {
		return errors.New("--inputs must be positive")
	}
	ctx := cmd.Context()
	b, name, err := loadConformanceBundle(cmd, args)
	if err != nil {
		return err
	}
	if f.source != "" {
		fsys, _, err := policySources([]string{f.source})
		if err != nil {
			return err
		}
		src, err := rego.Build(ctx, fsys)
		if err != nil {
			return fmt.Errorf("build the sources in %s:\n%w", f.source, err)
		}
		b.Modules = src.Modules
	}
	rep, err := policydiff.CheckBundle(ctx, b, policydiff.Options{Inputs: f.inputs, Seed: f.seed})
	if errors.Is(err, policydiff.ErrNoSources) {
		return fmt.Errorf("%s carries no Rego sources to run OPA's evaluator on: rebuild it with pbac policy build, or name them with --source DIR", name)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	out := cmd.OutOrStdout()
	if f.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printPolicyReport(out, name, f, rep); err != nil {
		return err
	}
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

// loadConformanceBundle reads a bundle file, compiles a policy directory,
// or builds the shipped policy.
func loadConformanceBundle(cmd *cobra.Command, args []string) (*rego.Bundle, string, error) {
	if len(args) == 0 {
		b, err := rego.BuildShipped(cmd.Context())
		return b, "the shipped policy", err
	}
	info, err := os.Stat(args[0])
	if err != nil {
		return nil, "", fmt.Errorf("bundle: %w", err)
	}
	if info.IsDir() {
		b, err := buildDir(cmd.Context(), os.DirFS(args[0]))
		if err != nil {
			return nil, "", fmt.Errorf("build %s:\n%w", args[0], err)
		}
		return b, args[0], nil
	}
	b, err := loadBundle(cmd, args[0])
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", args[0], err)
	}
	return b, args[0], nil
}

func printPolicyReport(out io.Writer, name string, f conformancePolicyFlags, rep policydiff.Report) error {
	rev := rep.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	fmt.Fprintf(out, "policy conformance: %s (revision %s)\nWasm (wazero) vs OPA topdown, %d generated inputs per entrypoint (seed %d) plus the bundle's vectors\n\n",
		name, rev, f.inputs, f.seed)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "entrypoint\tinputs\tagree\tallowed\tdisagree\t")
	var notes []string
	inputs := 0
	for _, r := range rep.Results {
		if r.Missing {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tmissing\t\n", r.Entrypoint)
			notes = append(notes, fmt.Sprintf("%s: the Wasm module does not export it", r.Entrypoint))
			continue
		}
		inputs += r.Inputs
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", r.Entrypoint, r.Inputs, r.Agreements, r.Allows, r.Disagreed)
		if r.Allows == 0 && r.Disagreed == 0 {
			notes = append(notes, fmt.Sprintf("%s: no input was allowed, so only deny paths were compared", r.Entrypoint))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		for i, d := range r.Disagreements {
			fmt.Fprintf(out, "\n%s disagreement %d of %d: %s\n  input: %s\n", r.Entrypoint, i+1, r.Disagreed,
				strings.ReplaceAll(d.Error, "\n", "\n  "), d.Input)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(out, "\nnote: %s\n", strings.Join(notes, "\nnote: "))
	}
	if rep.OK() {
		fmt.Fprintf(out, "\nok: %d entrypoints, %d inputs, every decision agrees\n", len(rep.Results), inputs)
	} else {
		fmt.Fprintf(out, "\nFAIL: %d disagreements", rep.Disagreed())
		if missing := countMissing(rep); missing > 0 {
			fmt.Fprintf(out, ", %d entrypoints missing", missing)
		}
		fmt.Fprintln(out)
	}
	return nil
}

func countMissing(rep policydiff.Report) int {
	n := 0
	for _, r := range rep.Results {
		if r.Missing {
			n++
		}
	}
	return n
}
