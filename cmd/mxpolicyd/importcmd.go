package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/importer"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// importHelp is the long help of "mxpolicyd import".
const importHelp = `Load another greylister's triplets and auto-whitelists into the database on
switch day, so the senders it already knows are not greylisted again. Every
row is read and checked first, then everything is written in one transaction:
a bad input writes nothing. Running an import again changes nothing.`

// importFlags are the flags both imports share.
type importFlags struct {
	storeFlags
	dryRun bool
}

func (o *importFlags) add(cmd *cobra.Command) {
	o.create = true // an import may fill a store the daemon has not made yet
	o.storeFlags.add(cmd)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "read and check everything, print what would be loaded, write nothing")
}

// load writes what read produced, unless --dry-run, and prints both.
func (o *importFlags) load(cmd *cobra.Command, cfg *config.Config, d *db.DB, name string,
	read func(importer.Options) (greylist.ImportSet, importer.Report, error)) error {
	set, rep, err := read(importer.Options{Config: cfg.Greylist, Now: time.Now()})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	printReport(w, name, rep)
	if o.dryRun {
		fmt.Fprintln(w, "dry run: nothing written")
		return nil
	}
	res, err := greylist.NewAdmin(d, cfg.Greylist).Import(cmd.Context(), set)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "loaded %d of %d triplets, %d of %d clients, %d of %d client/domain pairs (the others were present already)\n",
		res.Triplets, len(set.Triplets), res.Clients, len(set.Clients), res.Pairs, len(set.Pairs))
	return nil
}

func printReport(w io.Writer, name string, r importer.Report) {
	fmt.Fprintf(w, "%s: read %d passed and %d pending triplets, %d auto-whitelisted clients, %d client/domain pairs",
		name, r.Passed, r.Pending, r.Clients, r.Pairs)
	if r.Merged > 0 {
		fmt.Fprintf(w, " (%d rows merged onto a key read before)", r.Merged)
	}
	fmt.Fprintln(w)
	reasons := make([]string, 0, len(r.Skipped))
	for k := range r.Skipped {
		reasons = append(reasons, k)
	}
	slices.Sort(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "skipped %d: %s\n", r.Skipped[k], k)
	}
}

func newImportPostgreyCmd(g *globalOpts) *cobra.Command {
	o := &importFlags{}
	var delay int
	var byHost bool
	popt := importer.PostgreyOptions{}
	cmd := &cobra.Command{
		Use:   "postgrey FILE...",
		Short: "Import postgrey's postgrey.db and postgrey_clients.db",
		Long: `Import postgrey's triplets (postgrey.db) and auto-whitelisted clients
(postgrey_clients.db). A FILE ending in .db is read with db_dump -p (Debian's
db-util); any other FILE is read as db_dump -p output. A file whose name
contains "clients" is the auto-whitelist. Give the options postgrey ran with
(--delay, --ipv4cidr, --ipv6cidr, --lookup-by-host): they decide what its keys
and values mean. Keys hashed by --privacy cannot be imported; they are counted.`,
		Example: `  mxpolicyd import postgrey /var/lib/postgrey/postgrey.db /var/lib/postgrey/postgrey_clients.db
  db_dump -p postgrey.db > triplets.txt; mxpolicyd import postgrey --delay 60 triplets.txt`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, files []string) error {
			if err := checkPostgreyFlags(delay, popt); err != nil {
				return err
			}
			popt.Delay = time.Duration(delay) * time.Second
			if byHost {
				popt.IPv4CIDR, popt.IPv6CIDR = 32, 128
			}
			cfg, d, _, err := o.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.Close()
			return o.load(cmd, cfg, d, "postgrey", func(opt importer.Options) (greylist.ImportSet, importer.Report, error) {
				popt.Options = opt
				return importer.Postgrey(cmd.Context(), files, popt)
			})
		},
	}
	o.add(cmd)
	f := cmd.Flags()
	f.IntVar(&delay, "delay", 300, "postgrey's --delay, in seconds")
	f.IntVar(&popt.IPv4CIDR, "ipv4cidr", 24, "postgrey's --ipv4cidr")
	f.IntVar(&popt.IPv6CIDR, "ipv6cidr", 64, "postgrey's --ipv6cidr")
	f.BoolVar(&byHost, "lookup-by-host", false, "postgrey ran with --lookup-by-host (keys are full addresses)")
	f.StringVar(&popt.DBDump, "db-dump", "", "the db_dump program (default: db_dump, else db5.3_dump)")
	return cmd
}

// maxPostgreyDelay bounds --delay: a triplet's pass is its first sighting
// plus the delay, and no greylisting delay comes near a year (a larger
// value would also overflow time.Duration, about 292 years).
const maxPostgreyDelay = 365 * 24 * 3600

// checkPostgreyFlags refuses option values postgrey itself cannot have
// run with, naming the flag: the delay is 1 second to a year, a network 1
// to 32 bits long (IPv4) or 1 to 128 (IPv6).
func checkPostgreyFlags(delay int, popt importer.PostgreyOptions) error {
	if delay < 1 || delay > maxPostgreyDelay {
		return usageError{fmt.Errorf("--delay must be 1 to %d seconds (a year), got %d", maxPostgreyDelay, delay)}
	}
	if err := checkBits("--ipv4cidr", popt.IPv4CIDR, 32); err != nil {
		return err
	}
	return checkBits("--ipv6cidr", popt.IPv6CIDR, 128)
}

func checkBits(flag string, v, max int) error {
	if v < 1 || v > max {
		return usageError{fmt.Errorf("%s must be 1 to %d, got %d", flag, max, v)}
	}
	return nil
}

func newImportSQLgreyCmd(g *globalOpts) *cobra.Command {
	o := &importFlags{}
	cmd := &cobra.Command{
		Use:   "sqlgrey DSN",
		Short: "Import SQLgrey's connect, from_awl and domain_awl tables",
		Long: `Import SQLgrey's pending triplets (connect) and auto-whitelists (from_awl,
domain_awl) from its database: a postgres:// URL or an SQLite file, opened
read-only. from_awl rows become client/sender-domain pairs, what mxpolicyd
records when a triplet passes. For SQLgrey on MySQL, copy the three tables to
SQLite or PostgreSQL first.`,
		Example: `  mxpolicyd import sqlgrey postgres://sqlgrey@db.example.net/sqlgrey
  mxpolicyd import sqlgrey /var/lib/sqlgrey/sqlgrey.db --dry-run`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			cfg, d, logger, err := o.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.Close()
			src, err := openSource(cmd.Context(), a[0], logger)
			if err != nil {
				return err
			}
			defer src.Close()
			return o.load(cmd, cfg, d, "sqlgrey", func(opt importer.Options) (greylist.ImportSet, importer.Report, error) {
				return importer.SQLgrey(cmd.Context(), src, opt)
			})
		},
	}
	o.add(cmd)
	return cmd
}

// openSource opens SQLgrey's database read-only: a SQLite file must exist.
func openSource(ctx context.Context, dsn string, logger *slog.Logger) (*db.DB, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// KindOf's error names only the scheme, never the DSN: a mistyped
	// mysql://user:password@... must not be printed back.
	kind, err := db.KindOf(dsn)
	if err != nil {
		return nil, usageError{fmt.Errorf("sqlgrey database: %w", err)}
	}
	if kind == db.SQLite {
		if _, err := os.Stat(db.SQLitePath(dsn)); err != nil {
			return nil, fmt.Errorf("sqlgrey database: %w", err)
		}
	}
	d, err := db.OpenReadOnly(octx, dsn, logger)
	if err != nil {
		return nil, fmt.Errorf("sqlgrey database %s: %w", db.Redact(dsn), err)
	}
	return d, nil
}
