package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pulse",
		Short:         "Heartbeats and health verification without false downs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// One line per subcommand; each lives in its own file.
	root.AddCommand(
		newVersionCmd(),
		newSimCmd(),
		newProbeCmd(),
		newBeatCmd(),
		newConfigCmd(),
		newServeCmd(),
		newStatusCmd(),
		newDemoCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of pulse",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			goV := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				if bi.Main.Version != "" {
					v = bi.Main.Version
				}
				goV = bi.GoVersion
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulse %s %s\n", v, goV)
			return nil
		},
	}
}
