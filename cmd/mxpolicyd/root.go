package main

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// usageError marks a bad command line (exit 2), as opposed to a runtime
// failure (exit 1).
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// globalOpts are the flags every subcommand shares.
type globalOpts struct {
	configPath string
}

func newRootCmd() *cobra.Command {
	g := &globalOpts{}
	root := &cobra.Command{
		Use:   "mxpolicyd",
		Short: "Postfix policy daemon: greylisting, DNS lists, SPF and whitelists",
		Long: `mxpolicyd answers Postfix's check_policy_service requests at RCPT TO with
DUNNO, REJECT, DEFER_IF_PERMIT or PREPEND, from greylisting (PostgreSQL or an
embedded file store), DNSBL/RHSBL/DNSWL scores, SPF and whitelists.

Start it with "mxpolicyd serve" and add to Postfix's main.cf, after
reject_unauth_destination:
  check_policy_service { inet:127.0.0.1:10040, timeout=10s, default_action=DUNNO }`,
		SilenceUsage:  true, // runtime errors are one line, not a usage dump
		SilenceErrors: true, // main prints the error once
		Version:       version(),
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", "",
		"YAML config file (default: built-in defaults)")
	root.AddCommand(newServeCmd(g), newCheckCmd(g), newConfigCmd(g), newVersionCmd(),
		newGenDocsCmd(), newHealthcheckCmd(g))
	addStoreCommands(root, g)
	root.AddCommand(newGreylistCmd(g))
	root.AddCommand(newImportCmd(g))
	return root
}

// args wraps a cobra positional-argument validator so that its error is
// a usage error.
func args(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := v(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// buildVersion is set at link time by scripts/package.sh to
// `git describe --tags --always --dirty`
// (go build -ldflags "-X main.buildVersion=...").
var buildVersion string

// version is the link-time version, else the module version recorded by
// go install, else "devel".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "mxpolicyd", version())
			return nil
		},
	}
}
