package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// rateLimitHelp is the long help of "mxpolicyd ratelimit".
const rateLimitHelp = `Show the rate-limit counters that are in use (ratelimit.rules in the
config), and reset one key of one rule. The counters live in the database
every daemon shares, so a reset takes effect on every host at once.`

func newRateLimitListCmd(g *globalOpts) *cobra.Command {
	s := &storeFlags{}
	var format string
	var minPercent float64
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys using at least --min percent of their limit",
		Example: `  mxpolicyd ratelimit list
  mxpolicyd ratelimit list --min 0 --format json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--format: want text or json, got %s", quote.Short(format))}
			}
			// NaN compares false both ways, so it needs its own test.
			if math.IsNaN(minPercent) || minPercent < 0 || minPercent > 100 {
				return usageError{fmt.Errorf("--min: want a percent from 0 to 100, got %v", minPercent)}
			}
			cfg, d, _, err := s.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.Close()
			now := time.Now()
			rows, err := ratelimit.NewStore(d).Counters(cmd.Context(), now)
			if err != nil {
				return err
			}
			entries := ratelimit.Usage(rows, cfg.RateLimit, now, minPercent)
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), entries)
			}
			return printUsage(cmd.OutOrStdout(), entries, now)
		},
	}
	s.add(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	cmd.Flags().Float64Var(&minPercent, "min", 50, "show keys that used at least this percent of their limit")
	return cmd
}

func printUsage(w io.Writer, entries []ratelimit.Entry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tKIND\tKEY\tUSED\tDETAIL")
	for _, e := range entries {
		used := fmt.Sprintf("%.0f%%", e.Used)
		if e.Used < 0 {
			used = "-"
		}
		nets := make([]string, len(e.Networks))
		for i, n := range e.Networks {
			nets[i] = printable(n)
		}
		detail := strings.Join(nets, " ")
		if e.Kind == ratelimit.KindRate {
			detail = "at rest in " + e.Rest.Sub(now).Round(time.Second).String()
		}
		// The key is what a client sent (a sender, a login): escaped like
		// greylist list's values, so it cannot forge a column or a row, or
		// drive the terminal.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(e.Rule), e.Kind, printable(e.Key), used, detail)
	}
	return tw.Flush() // a full disk or a closed pipe: not a success
}

func newRateLimitResetCmd(g *globalOpts) *cobra.Command {
	s := &storeFlags{}
	cmd := &cobra.Command{
		Use:   "reset RULE KEY",
		Short: "Clear one key's counter under one rule",
		Long: `Clear one key's counter under one rule: a rate key gets its whole burst
back, a distinct_networks key forgets its networks. KEY is as list shows
it; a key of several parts is joined with "|", so quote it. A rule the
config does not name, or a key without a counter, is an error and changes
nothing.`,
		Example: `  mxpolicyd ratelimit reset per-user alice@example.org
  mxpolicyd ratelimit reset per-user-network 'alice@example.org|192.0.2.0/24'`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			cfg, d, _, err := s.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.Close()
			n, err := ratelimit.Reset(cmd.Context(), ratelimit.NewStore(d), cfg.RateLimit, a[0], a[1])
			if err != nil {
				err = fmt.Errorf("rule %s, key %s: %w", quote.Short(a[0]), quote.Short(a[1]), err)
				return usageIf(err, ratelimit.ErrNoRule, ratelimit.ErrNoCounter)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reset %s %s (%d rows)\n", printable(a[0]), printable(a[1]), n)
			return nil
		},
	}
	s.add(cmd)
	return cmd
}
