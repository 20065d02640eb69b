package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/report"
)

func newReportCmd(g *globalOpts) *cobra.Command {
	s := &storeFlags{}
	o := report.Options{}
	var since string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Print greylisting and list statistics from the decision log",
		Long: `Print the reporting views over the decision log:
  daily          per day: requests, deferred, passed after delay, whitelisted,
                 rejected by each check, and what observe mode would have done
  retry-delay    how long legitimate senders took to retry, per day
  never-retried  triplets deferred by greylisting that never came back
  ratelimit      per day and rate-limit rule, what the rule answered (not in all)
The same views are in the database for your own SQL (docs/reporting.md).`,
		Example: `  mxpolicyd report --since 7d
  mxpolicyd report --report never-retried --since 2026-11-01 --format csv
  mxpolicyd report --format html > report.html`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := report.ParseSince(since, time.Now())
			if err != nil {
				return usageError{err}
			}
			o.Since = t
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			cfg, err := s.load(g)
			if err != nil {
				return err
			}
			// Reports only read: a read-only session and no migrations,
			// so a hot standby can serve them.
			d, err := db.OpenReadOnly(cmd.Context(), cfg.Database, cfg.Logger(os.Stderr))
			if err != nil {
				return fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
			}
			defer d.Close()
			if o.Format == report.FormatHTML {
				return report.WriteHTML(cmd.Context(), d, htmlOptions(o.Since, time.Now()), cmd.OutOrStdout())
			}
			return report.Run(cmd.Context(), d, o, cmd.OutOrStdout())
		},
	}
	s.add(cmd)
	f := cmd.Flags()
	f.StringVar(&since, "since", "7d", "start: a duration back from now (7d, 24h) or a date (2026-11-01)")
	f.StringVar(&o.Format, "format", "text", "text, json, csv, or html (one page with charts, every report)")
	f.StringVar(&o.Report, "report", "all", "daily, retry-delay, never-retried, ratelimit or all")
	f.IntVar(&o.Limit, "limit", 100, "never-retried: at most this many triplets, newest first (0: all)")
	return cmd
}

// htmlOptions are the HTML report's, its checks in the engine's order.
func htmlOptions(since, now time.Time) report.HTMLOptions {
	return report.HTMLOptions{Since: since, Now: now, Checks: checkNames()}
}

// checkNames are the checks of the check table, in its order.
func checkNames() []string {
	var names []string
	for _, c := range checkTable() {
		names = append(names, c.name)
	}
	return names
}

// serveReport has the metrics listener serve the HTML report at /report
// when metrics.report is on. It reads the store from the listener's
// goroutine, never from a policy connection's, and on SQLite through a
// handle of its own (reportStore).
func (d *daemon) serveReport(ctx context.Context, srv *metrics.Server) {
	if !d.cfg.Metrics.Report {
		return
	}
	store, err := d.reportStore(ctx)
	if err != nil {
		d.log.Warn("report: cannot open the store read-only; /report is off", "err", err)
		return
	}
	srv.ServeReport(report.NewHandler(store, checkNames(), d.log))
}

// reportStore is the store the served report reads. On PostgreSQL it is
// the daemon's pool. On SQLite the daemon's store has one connection,
// which greylisting's decisions wait for, and a report's queries take
// seconds on a month of decisions (report/BENCHMARKS.md): they get a
// read-only connection of their own, which in WAL mode reads beside the
// writer without holding it up (https://www.sqlite.org/wal.html,
// "Concurrency"). It is closed with the daemon.
func (d *daemon) reportStore(ctx context.Context) (*db.DB, error) {
	if d.db.Kind() != db.SQLite {
		return d.db, nil
	}
	ro, err := db.OpenReadOnly(ctx, d.cfg.Database, d.log)
	if err != nil {
		return nil, err
	}
	d.stop = append(d.stop, ro.Close)
	return ro, nil
}
