package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/host"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file without starting anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fc, err := host.LoadConfig(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d backend(s)\n", args[0], len(fc.Backends))
			return nil
		},
	})
	return cmd
}
