package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
)

// usageError marks a bad command line (exit 2), as opposed to a runtime
// failure (exit 1).
type usageError struct{ error }

// usageIf makes err a usage error (exit 2) when it is one of the refusals
// given: a package's sentinel for input it refused, never a failure of the
// database or the system, which stays exit 1.
func usageIf(err error, refusals ...error) error {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return usageError{err}
		}
	}
	return err
}

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
		SilenceUsage:               true, // runtime errors are one line, not a usage dump
		SilenceErrors:              true, // main prints the error once
		Version:                    version(),
		Args:                       noSubcommand,
		RunE:                       showHelp,
		SuggestionsMinimumDistance: suggestDistance,
	}
	root.SetVersionTemplate("mxpolicyd {{.Version}}\n") // as the version command prints it
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{flagError(err)}
	})
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", "",
		"YAML config file (default: built-in defaults)")
	root.AddCommand(newServeCmd(g), newCheckCmd(g), newVersionCmd(), newGenDocsCmd(), newHealthcheckCmd(g),
		newMigrateCmd(g), newGCCmd(g), newReportCmd(g),
		group("config", "Inspect the configuration", "",
			newConfigCheckCmd(g)),
		group("greylist", "List, release and forget greylisted triplets", greylistHelp,
			newGLListCmd(g), newGLReleaseCmd(g), newGLForgetCmd(g)),
		group("import", "Import greylisting state from postgrey or SQLgrey", importHelp,
			newImportPostgreyCmd(g), newImportSQLgreyCmd(g)),
		group("ratelimit", "Show and reset rate-limit counters", rateLimitHelp,
			newRateLimitListCmd(g), newRateLimitResetCmd(g)),
		group("whitelist", "Manage whitelist entries in the database", whitelistHelp,
			newWLAddCmd(g), newWLRemoveCmd(g), newWLListCmd(g), newWLImportCmd(g)))
	builtinArgs(root)
	return root
}

// builtinArgs holds cobra's own help and completion commands to the exit
// codes of the others: a topic or shell that does not exist, or a word too
// many, is a usage error (exit 2), where cobra printed the root's help and
// succeeded, or failed with exit 1.
func builtinArgs(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Args = func(_ *cobra.Command, a []string) error {
				if cmd, rest, err := root.Find(a); err != nil || len(rest) > 0 || (len(a) > 0 && cmd == root) {
					return usageError{fmt.Errorf("unknown help topic %q", strings.Join(a, " "))}
				}
				return nil
			}
		case "completion":
			c.Args, c.RunE = noSubcommand, showHelp // as group's: runnable, so its args are checked
			for _, shell := range c.Commands() {
				if shell.Args != nil {
					shell.Args = args(shell.Args)
				}
			}
		}
	}
}

// group returns a command that only holds its subcommands; run alone, it
// prints its help.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long,
		Args: noSubcommand, RunE: showHelp, SuggestionsMinimumDistance: suggestDistance}
	cmd.AddCommand(subs...)
	return cmd
}

// noSubcommand is the argument check of a command that holds
// subcommands: a word that names none of them is a usage error (exit 2),
// with cobra's suggestions. Without it cobra reports the word as a plain
// error (exit 1) at the top, and below it prints the help and succeeds.
func noSubcommand(cmd *cobra.Command, a []string) error {
	if len(a) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %s for %q", quote.Short(a[0]), cmd.CommandPath())
	if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// flagError is pflag's error for a bad flag, with what the user typed
// escaped and cut (quote.Short): pflag echoes it as given, so an escape
// sequence in a flag's name reached the terminal.
func flagError(err error) error {
	var unknown *pflag.NotExistError
	var invalid *pflag.InvalidValueError
	switch {
	case errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() != "":
		return fmt.Errorf("unknown shorthand flag in %s", quote.Short("-"+unknown.GetSpecifiedShortnames()))
	case errors.As(err, &unknown):
		return fmt.Errorf("unknown flag: %s", quote.Short("--"+unknown.GetSpecifiedName()))
	case errors.As(err, &invalid):
		return fmt.Errorf("invalid argument %s for --%s: %w", quote.Short(invalid.GetValue()), invalid.GetFlag().Name,
			errors.Unwrap(invalid))
	}
	return err
}

// suggestDistance is how many edits a mistyped subcommand may be from the
// ones suggested: cobra's own default, which SuggestionsFor does not apply.
const suggestDistance = 2

// showHelp runs a command that holds subcommands, given none: its help.
func showHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

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
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "mxpolicyd", version())
			return err
		},
	}
}
