package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/bench/lightmcp"
)

// withBenchSubcommands adds pbac bench's hidden subcommands to the bench
// command (kept apart from bench.go, whose command they only extend).
func withBenchSubcommands(bench *cobra.Command) *cobra.Command {
	bench.AddCommand(newBenchLightBackendCommand())
	return bench
}

func newBenchLightBackendCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:    "light-backend",
		Hidden: true,
		Short:  "Serve the light bench backend (one tool, no schema validation) until interrupted",
		Long: `Serve the light bench backend at http://ADDR/mcp until interrupted: an MCP
Streamable HTTP server with one tool, search_issues, shaped as the demo jira
backend's, answering a fixed text that echoes the query. It validates no JSON
Schema and keeps no data, so that a benchmark through the gateway measures the
gateway rather than the backend. Front it as backend "jira" (the shipped
policy's catalogue entry jira.search_issues applies). Not a product server.`,
		Example: `  pbac bench light-backend --listen 127.0.0.1:9001`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := lightmcp.Start(cmd.Context(), listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "light\t%s\n", r.URL)
			<-cmd.Context().Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.Close(ctx); err != nil {
				return fmt.Errorf("closing the light backend: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	return cmd
}
