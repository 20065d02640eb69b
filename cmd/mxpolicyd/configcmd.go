package main

import (
	"fmt"
	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
)

func newConfigCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the config file and print the effective config, secrets redacted",
		Long: `Load the config file (--config), apply defaults and $` + config.EnvDatabase + `,
validate every key, and print the effective configuration as YAML with the
database password and DNS list secrets (Spamhaus DQS keys, zones of lists
given a name) redacted. Exits non-zero naming the bad key if invalid.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath, checkDefaults(), nil)
			if err != nil {
				return usageError{err}
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), string(out))
			return nil
		},
	})
	return cmd
}
