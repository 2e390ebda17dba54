package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with pulse.yaml",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file; exit 1 with every error (file:line: field: message)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(args[0])
			if err != nil {
				fes := config.FieldErrors(err)
				if len(fes) == 0 {
					return &exitError{code: 1, msg: err.Error()}
				}
				for _, fe := range fes {
					fmt.Fprintln(cmd.ErrOrStderr(), fe.Error())
				}
				return &exitError{code: 1, msg: fmt.Sprintf("%s: %d problem(s); nothing was applied", args[0], len(fes))}
			}
			probes := 0
			for _, s := range c.Spec.Services {
				probes += len(s.Active)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (profile %s, %d services, %d probe modules in use, hash %s)\n",
				args[0], c.Profile, len(c.Spec.Services), probes, c.Hash)
			return nil
		},
	})
	cmd.AddCommand(newConfigPushCmd())
	return cmd
}
