package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/demo"
)

func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo tenant's MCP backends on their own",
	}
	cmd.AddCommand(newDemoBackendCommand(), newDemoBackendsCommand())
	return cmd
}

func newDemoBackendCommand() *cobra.Command {
	var (
		listen string
		stdio  bool
	)
	cmd := &cobra.Command{
		Use:   "backend NAME",
		Short: "Serve one demo backend over MCP Streamable HTTP (no gateway, no auth)",
		Long: "Serve one demo backend (" + strings.Join(demo.Names(), ", ") + ") at http://ADDR/mcp until interrupted.\n" +
			"With --stdio, serve it instead over stdin/stdout (newline-delimited JSON-RPC, one client) until stdin closes.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: demo.Names(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if stdio {
				// stdout carries the protocol: nothing else may be written to it.
				s, err := demo.NewServer(args[0])
				if err != nil {
					return err
				}
				return s.Run(cmd.Context(), &mcp.StdioTransport{})
			}
			r, err := demo.Start(cmd.Context(), args[0], listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", r.Name, r.URL)
			return serveUntilDone(cmd.Context(), r)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	cmd.Flags().BoolVar(&stdio, "stdio", false, "serve over stdin/stdout instead of HTTP (--listen is ignored)")
	return cmd
}

func newDemoBackendsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "backends",
		Short: "Serve every demo backend, each on its own 127.0.0.1 port, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, err := demo.StartAll(cmd.Context())
			if err != nil {
				return err
			}
			for _, r := range all {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", r.Name, r.URL)
			}
			return serveUntilDone(cmd.Context(), all...)
		},
	}
}

// serveUntilDone waits for ctx (the interrupt signal) and closes rs.
func serveUntilDone(ctx context.Context, rs ...*demo.Running) error {
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var firstErr error
	for _, r := range rs {
		if err := r.Close(closeCtx); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("closing %s: %w", r.Name, err)
		}
	}
	return firstErr
}
