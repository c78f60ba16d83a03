package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newUpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Run the whole demo: authorization server, gateway, backends and dashboard",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.ErrOrStderr(), `pbac up is not available yet.

Built so far: the policy engine (Rego compiled to Wasm, run in wazero, hot
swappable) and the authorization server. Try:
  pbac policy test            run the shipped policy's Rego tests
  pbac policy eval pbac/tool_call --input input.json
  pbac asrv                   the OAuth authorization server alone
  pbac statement sign --provider claude-code --model claude-opus-4

Still missing for "up": the MCP gateway, the demo backends and the
dashboard.
`)
			return errors.New("pbac up: the gateway is not built yet")
		},
	}
}
