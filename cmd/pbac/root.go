package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pbac",
		Short: "PBAC Gateway: per-call policy for every AI agent's tool calls",
		Long: `PBAC Gateway is one policy enforcement point between MCP clients (coding
agents) and the tools they call. Agents get their own OAuth identity and every
tools/call is decided by Rego policy, compiled to WebAssembly, with its
arguments.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUpCommand(), newPolicyCommand(), newAsrvCommand(), newConfigCommand())
	root.AddCommand(newStatementCommand(), newUserCommand())
	root.AddCommand(newDemoCommand())
	root.AddCommand(withBenchSubcommands(newBenchCommand()), newProbeCommand(), newConformanceCommand())
	return root
}
