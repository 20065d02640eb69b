package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/internal/when"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// wlOpts are the flags the whitelist subcommands share.
type wlOpts struct {
	storeFlags
	comment string
	by      string
	expires string
}

// whitelistHelp is the long help of "mxpolicyd whitelist".
const whitelistHelp = `Add, remove, list and import whitelist entries kept in the database. Every
running daemon sees a change within about a second (they poll a change
counter), without a restart.

Kinds and what they bypass:
  client       address or CIDR (IPv4/IPv6)            every check
  client_name  verified host name: host, domain, /re/  every check
  sender       address, user@, or domain               greylisting only
  recipient    address, user@, or domain               greylisting only`

func (o *wlOpts) addMeta(cmd *cobra.Command) {
	o.storeFlags.add(cmd)
	cmd.Flags().StringVar(&o.comment, "comment", "", "why the entry exists (shown by list)")
	cmd.Flags().StringVar(&o.by, "by", currentUser(), "who adds it")
	cmd.Flags().StringVar(&o.expires, "expires", "", "expiry: a duration (30d, 12h) or a date (2026-12-31); default never")
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// expiry parses --expires relative to now.
func (o *wlOpts) expiry(now time.Time) (time.Time, error) {
	if o.expires == "" {
		return time.Time{}, nil
	}
	t, err := when.Parse(o.expires, now, +1, time.Local)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--expires: %w", err)}
	}
	return t, nil
}

// store opens the database and the whitelist store on it.
func (o *wlOpts) store(cmd *cobra.Command, g *globalOpts) (*whitelist.Store, func(), error) {
	_, d, _, err := o.open(cmd.Context(), g)
	if err != nil {
		return nil, nil, err
	}
	return whitelist.NewStore(d, nil), d.Close, nil
}

func newWLAddCmd(g *globalOpts) *cobra.Command {
	o := &wlOpts{}
	cmd := &cobra.Command{
		Use:   "add KIND VALUE",
		Short: "Add an entry",
		Example: `  mxpolicyd whitelist add client 192.0.2.0/24 --comment "partner relay"
  mxpolicyd whitelist add client_name mail.example.org --expires 30d
  mxpolicyd whitelist add recipient abuse@example.net`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			kind, err := whitelist.ParseKind(a[0])
			if err != nil {
				return usageError{err}
			}
			exp, err := o.expiry(time.Now())
			if err != nil {
				return err
			}
			s, done, err := o.store(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			e, err := s.Add(cmd.Context(), whitelist.Entry{Kind: kind, Value: a[1], Comment: o.comment, CreatedBy: o.by, Expires: exp})
			if err != nil {
				return usageIf(err, whitelist.ErrInvalid)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s %s\n", e.Kind, e.Value)
			return nil
		},
	}
	o.addMeta(cmd)
	return cmd
}

func newWLRemoveCmd(g *globalOpts) *cobra.Command {
	o := &wlOpts{}
	cmd := &cobra.Command{
		Use:     "remove KIND VALUE",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove an entry",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			kind, err := whitelist.ParseKind(a[0])
			if err != nil {
				return usageError{err}
			}
			s, done, err := o.store(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			if err := s.Remove(cmd.Context(), kind, a[1]); err != nil {
				return usageIf(err, whitelist.ErrInvalid)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s %s\n", kind, printable(a[1]))
			return nil
		},
	}
	o.storeFlags.add(cmd)
	return cmd
}

func newWLListCmd(g *globalOpts) *cobra.Command {
	o := &wlOpts{}
	var kind string
	var expired bool
	cmd := &cobra.Command{
		Use:   "list [SUBSTRING]",
		Short: "List entries",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			f := whitelist.Filter{Expired: expired}
			if kind != "" {
				k, err := whitelist.ParseKind(kind)
				if err != nil {
					return usageError{err}
				}
				f.Kind = k
			}
			if len(a) == 1 {
				f.Value = a[0]
			}
			s, done, err := o.store(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			list, err := s.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			return printEntries(cmd.OutOrStdout(), list)
		},
	}
	o.storeFlags.add(cmd)
	cmd.Flags().StringVar(&kind, "kind", "", "only this kind")
	cmd.Flags().BoolVar(&expired, "expired", false, "include expired entries")
	return cmd
}

func printEntries(w io.Writer, list []whitelist.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tVALUE\tEXPIRES\tBY\tCREATED\tCOMMENT")
	for _, e := range list {
		exp := "never"
		if !e.Expires.IsZero() {
			exp = e.Expires.Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(string(e.Kind)), printable(e.Value), exp,
			printable(e.CreatedBy), e.CreatedAt.Format(time.DateOnly), printable(e.Comment))
	}
	return tw.Flush() // a full disk or a closed pipe: not a success
}

func newWLImportCmd(g *globalOpts) *cobra.Command {
	o := &wlOpts{}
	var format string
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import a postgrey-format list into the database, all or nothing",
		Long: `Import a file in postgrey's whitelist_clients or whitelist_recipients format
(--format clients|recipients|senders) into the database in one transaction:
one bad line imports nothing and names file:line. Entries already present are
counted and left unchanged.`,
		Example: `  mxpolicyd whitelist import --format clients /etc/postgrey/whitelist_clients.local`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			f, err := whitelist.ParseFormat(format)
			if err != nil {
				return usageError{err}
			}
			exp, err := o.expiry(time.Now())
			if err != nil {
				return err
			}
			in, name, err := openInput(cmd, a[0])
			if err != nil {
				return err
			}
			defer in.Close()
			s, done, err := o.store(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			res, err := s.Import(cmd.Context(), in, whitelist.ImportOptions{Format: f, Name: name,
				Comment: o.comment, CreatedBy: o.by, Expires: exp})
			if err != nil {
				return usageIf(err, whitelist.ErrInvalid) // a bad line is the admin's, as in config check
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d entries (%d already present)\n", res.Added, res.Existing)
			return nil
		},
	}
	o.addMeta(cmd)
	cmd.Flags().StringVar(&format, "format", "clients", "clients, recipients or senders")
	return cmd
}

// openInput opens FILE, or stdin for "-"; an empty name is a usage error.
func openInput(cmd *cobra.Command, path string) (io.ReadCloser, string, error) {
	switch path {
	case "":
		return nil, "", usageError{errors.New(`FILE is empty: name a file, or "-" for stdin`)}
	case "-":
		return io.NopCloser(cmd.InOrStdin()), "stdin", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	return f, path, nil
}
