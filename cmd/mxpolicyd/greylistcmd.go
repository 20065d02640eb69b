package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/internal/when"
)

// greylistHelp is the long help of "mxpolicyd greylist".
const greylistHelp = `Look at and change the greylisting state in the database. Every running
daemon sees a release or forget within a second or two, its in-memory pass
cache included (they poll a change counter).

A selector names triplets: --client (an address, keyed by its network as
requests are; a network of greylist.ipv4_prefix/ipv6_prefix bits; or a key as
list prints it, net:... or spf:...), --sender (normalized as requests are; <>
is the null sender), --recipient. A change that would select every triplet
needs --all instead.`

// glOpts are the flags the greylist subcommands share.
type glOpts struct {
	storeFlags
	sel greylist.Selector
}

func (o *glOpts) addSelector(cmd *cobra.Command, all bool) {
	o.storeFlags.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.sel.Client, "client", "", "client address, network or key (net:..., spf:...)")
	f.StringVar(&o.sel.Sender, "sender", "", "envelope sender (<> for the null sender)")
	f.StringVar(&o.sel.Recipient, "recipient", "", "recipient address")
	if all {
		f.BoolVar(&o.sel.All, "all", false, "select every triplet (alone, without a selector)")
	}
}

// withAdmin opens the database, runs fn with its greylist administration
// and closes it. A refused selector is a usage error (exit 2).
func (o *glOpts) withAdmin(cmd *cobra.Command, g *globalOpts, fn func(a *greylist.Admin) error) error {
	cfg, d, _, err := o.open(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer d.Close()
	return usageIf(fn(greylist.NewAdmin(d, cfg.Greylist)), greylist.ErrBadSelector)
}

func newGLListCmd(g *globalOpts) *cobra.Command {
	o := &glOpts{}
	var state, older, newer, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List pending and passed triplets",
		Example: `  mxpolicyd greylist list --state pending --older-than 1h
  mxpolicyd greylist list --client 192.0.2.7 --format json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageError{fmt.Errorf("--limit %d: want 0 (all) or more", limit)}
			}
			f := greylist.Filter{Selector: o.sel, Limit: limit}
			var err error
			if f.State, err = greylist.ParseState(state); err != nil {
				return usageError{err}
			}
			now := time.Now()
			if f.OlderThan, err = instant("--older-than", older, now); err != nil {
				return err
			}
			if f.NewerThan, err = instant("--newer-than", newer, now); err != nil {
				return err
			}
			write, err := rowWriter(format)
			if err != nil {
				return usageError{err}
			}
			return o.withAdmin(cmd, g, func(a *greylist.Admin) error {
				rows, more, err := a.List(cmd.Context(), f)
				if err != nil {
					return err
				}
				if err := write(cmd.OutOrStdout(), rows); err != nil {
					return err
				}
				if more {
					fmt.Fprintf(cmd.ErrOrStderr(), "more than %d triplets match; showing the newest (raise --limit, 0 for all)\n", limit)
				}
				return nil
			})
		},
	}
	o.addSelector(cmd, false)
	fl := cmd.Flags()
	fl.StringVar(&state, "state", "all", "pending, passed or all")
	fl.StringVar(&older, "older-than", "", "first seen before: a duration back from now (1h, 7d) or a date")
	fl.StringVar(&newer, "newer-than", "", "first seen at or after: a duration back from now or a date")
	fl.StringVar(&format, "format", "text", "text, json or csv")
	fl.IntVar(&limit, "limit", 100, "at most this many triplets, newest first (0: all)")
	return cmd
}

// instant reads an --older-than/--newer-than value; "" is no bound.
func instant(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := when.Parse(v, now, -1, time.Local)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	return t, nil
}

// rowWriter returns the writer of a --format, like report's.
func rowWriter(format string) (func(io.Writer, []greylist.Row) error, error) {
	switch format {
	case "", "text":
		return writeRowsText, nil
	case "json":
		return writeJSON[greylist.Row], nil
	case "csv":
		return writeRowsCSV, nil
	}
	return nil, fmt.Errorf("unknown format %s (want text, json or csv)", quote.Short(format))
}

var rowColumns = []string{"state", "client_key", "sender", "recipient", "first_seen", "last_seen", "passed_at",
	"attempts", "client_addr", "raw_sender"}

func rowFields(r greylist.Row, ts func(time.Time) string) []string {
	passed := ""
	if r.PassedAt != nil {
		passed = ts(*r.PassedAt)
	}
	return []string{string(r.State), r.ClientKey, r.Sender, r.Recipient, ts(r.FirstSeen), ts(r.LastSeen), passed,
		strconv.Itoa(r.Attempts), r.ClientAddr, r.RawSender}
}

func writeRowsText(w io.Writer, rows []greylist.Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tCLIENT\tSENDER\tRECIPIENT\tFIRST SEEN\tLAST SEEN\tATTEMPTS")
	local := func(t time.Time) string { return t.Local().Format(time.DateTime) }
	for _, r := range rows {
		f := rowFields(r, local)
		// Stored values came from clients: printable quotes anything odd.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f[0], printable(f[1]), printable(f[2]), printable(f[3]),
			f[4], f[5], f[7])
	}
	return tw.Flush()
}

func writeRowsCSV(w io.Writer, rows []greylist.Row) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(rowColumns)
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, r := range rows {
		_ = cw.Write(rowFields(r, rfc))
	}
	cw.Flush()
	return cw.Error()
}

func newGLReleaseCmd(g *globalOpts) *cobra.Command {
	o := &glOpts{}
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Let pending triplets pass now",
		Long: `Let the selected pending triplets pass: the next attempt of each passes at once,
as if it came after greylist.delay. Passed triplets are left as they are.`,
		Example: `  mxpolicyd greylist release --client 192.0.2.7 --sender alice@example.org --recipient bob@example.net
  mxpolicyd greylist release --sender newsletter@example.com`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withAdmin(cmd, g, func(a *greylist.Admin) error {
				n, err := a.Release(cmd.Context(), o.sel, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "released %d pending triplets\n", n)
				return nil
			})
		},
	}
	o.addSelector(cmd, true)
	return cmd
}

func newGLForgetCmd(g *globalOpts) *cobra.Command {
	o := &glOpts{}
	cmd := &cobra.Command{
		Use:   "forget",
		Short: "Delete triplets, so their mail is greylisted again",
		Long: `Delete the selected triplets, pending or passed, and what would let their mail
pass anyway: the client/sender-domain pairs of a named client or sender, and a
named client network's auto-whitelist count. Their next mail is greylisted
again. An auto-whitelisted client passes everything it sends: name it with
--client to forget it too.`,
		Example: `  mxpolicyd greylist forget --client 192.0.2.7
  mxpolicyd greylist forget --sender spammer@example.com`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withAdmin(cmd, g, func(a *greylist.Admin) error {
				r, err := a.Forget(cmd.Context(), o.sel)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "forgot %d triplets, %d client/domain pairs, %d auto-whitelisted clients\n",
					r.Triplets, r.Pairs, r.AWLClients)
				return nil
			})
		},
	}
	o.addSelector(cmd, true)
	return cmd
}
