package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/replies"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// gcResult is what one gc run removed (or would remove, dry).
type gcResult struct {
	greylist   greylist.GCStats
	whitelist  int64
	replies    int64
	ratelimit  ratelimit.GCStats
	decisions  decisionlog.PruneResult
	indexed    []string // daily partitions given their client index
	dryRun     bool
	tookSecond float64
}

func (r gcResult) attrs() []any {
	return []any{
		slog.Int64("pending", r.greylist.Pending), slog.Int64("passed", r.greylist.Passed),
		slog.Int64("awl_clients", r.greylist.AWLClients), slog.Int64("awl_pairs", r.greylist.AWLPairs),
		slog.Int64("whitelist_expired", r.whitelist), slog.Int64("replies", r.replies),
		slog.Int64("ratelimit_cells", r.ratelimit.Cells), slog.Int64("ratelimit_networks", r.ratelimit.Networks),
		slog.Int64("decisions", r.decisions.Rows),
		slog.Int("partitions", len(r.decisions.Partitions)), slog.Int("indexed_days", len(r.indexed)),
		slog.Float64("seconds", r.tookSecond),
	}
}

// print writes the summary in one write, whose error it returns: a
// summary lost to a full disk or a closed pipe is not a success.
func (r gcResult) print(out io.Writer) error {
	var w strings.Builder
	verb := "removed"
	if r.dryRun {
		verb = "would remove"
	}
	fmt.Fprintf(&w, "greylist: %s %d pending triplets (older than the retry window), %d passed triplets,\n",
		verb, r.greylist.Pending, r.greylist.Passed)
	fmt.Fprintf(&w, "          %d auto-whitelisted clients and %d client/domain pairs (unseen for max_age)\n",
		r.greylist.AWLClients, r.greylist.AWLPairs)
	fmt.Fprintf(&w, "whitelist: %s %d expired entries\n", verb, r.whitelist)
	fmt.Fprintf(&w, "replies: %s %d pairs (unseen for greylist.max_age)\n", verb, r.replies)
	fmt.Fprintf(&w, "ratelimit: %s %d counters back at rest and %d networks past their window\n",
		verb, r.ratelimit.Cells, r.ratelimit.Networks)
	fmt.Fprintf(&w, "decisions: %s %d rows older than %s (%d daily partitions)\n",
		verb, r.decisions.Rows, r.decisions.Cutoff.Format(time.DateTime), len(r.decisions.Partitions))
	if len(r.indexed) > 0 {
		index := "indexed"
		if r.dryRun {
			index = "would index"
		}
		fmt.Fprintf(&w, "decisions: %s %d ended days by client (%s)\n", index, len(r.indexed), strings.Join(r.indexed, ", "))
	}
	fmt.Fprintf(&w, "took %.2fs\n", r.tookSecond)
	_, err := io.WriteString(out, w.String())
	return err
}

// collectGarbage runs every store's gc. The tables that grow with the
// mail (triplets, reply pairs, rate counters) are deleted from in small
// batches, so serving never stalls; whitelist entries, few, in one
// statement; the decision log by whole days on PostgreSQL (Prune), whose
// ended days then get their client index (IndexClosedDays). It is safe
// to run on several hosts at once.
func collectGarbage(ctx context.Context, cfg *config.Config, d *db.DB, dryRun bool) (gcResult, error) {
	start := time.Now()
	res := gcResult{dryRun: dryRun}
	// Triplets, reply pairs and rate counters keep the database server's
	// time (internal/db/clock.go); the decision log keeps this host's.
	offset, err := db.MeasureClockOffset(ctx, d)
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	stored := start.Add(offset)
	g, err := greylist.New(cfg.Greylist, greylist.NewStore(d), greylist.Options{})
	if err != nil {
		return res, err
	}
	if res.greylist, err = g.GC(ctx, stored, dryRun); err != nil {
		return res, fmt.Errorf("gc: greylist: %w", err)
	}
	if res.replies, err = gcReplies(ctx, cfg, d, stored, dryRun); err != nil {
		return res, err
	}
	// Rate counters at rest limit nothing: the same as no row.
	if res.ratelimit, err = ratelimit.NewStore(d).GC(ctx, stored, cfg.Greylist.GCBatch, dryRun); err != nil {
		return res, fmt.Errorf("gc: ratelimit: %w", err)
	}
	wl := whitelist.NewStore(d, nil)
	purge := wl.Purge
	if dryRun {
		purge = wl.Expired
	}
	if res.whitelist, err = purge(ctx); err != nil {
		return res, fmt.Errorf("gc: whitelist: %w", err)
	}
	if !dryRun {
		if _, err := decisionlog.EnsurePartitions(ctx, d, start, cfg.DecisionLog.PartitionsAhead); err != nil {
			return res, fmt.Errorf("gc: decision log partitions: %w", err)
		}
	}
	if res.decisions, err = decisionlog.Prune(ctx, d, start, cfg.DecisionLog.Retention, dryRun); err != nil {
		return res, fmt.Errorf("gc: decision log: %w", err)
	}
	// After the prune, so no day about to go is indexed first; a dry run
	// pruned nothing, so it leaves out the days the prune would drop.
	if res.indexed, err = decisionlog.IndexClosedDays(ctx, d, start, dryRun); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	res.indexed = slices.DeleteFunc(res.indexed, func(p string) bool {
		return slices.Contains(res.decisions.Partitions, p)
	})
	res.tookSecond = time.Since(start).Seconds()
	return res, nil
}

// gcReplies removes the reply pairs unseen for greylist.max_age, in
// batches of greylist.gc_batch rows.
func gcReplies(ctx context.Context, cfg *config.Config, d *db.DB, now time.Time, dryRun bool) (int64, error) {
	r, err := replies.New(cfg.Replies, replies.NewStore(d), replies.Options{MaxAge: cfg.Greylist.MaxAge})
	if err != nil {
		return 0, err
	}
	n, err := r.GC(ctx, now, cfg.Greylist.GCBatch, dryRun)
	if err != nil {
		return n, fmt.Errorf("gc: replies: %w", err)
	}
	return n, nil
}

func newGCCmd(g *globalOpts) *cobra.Command {
	s := &storeFlags{}
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove expired greylist, whitelist and decision-log rows",
		Long: `Garbage-collect the database: pending greylist triplets older than
greylist.retry_window; passed triplets, auto-whitelist rows and reply pairs
unseen for greylist.max_age; expired whitelist entries; decisions older than
decision_log.retention (on PostgreSQL by dropping daily partitions).
On PostgreSQL it also builds the per-client index of each day that has
ended (docs/reporting.md).
Deletes run in batches so serving never stalls, and several hosts may run gc
at once. Run it hourly from the systemd timer or cron job in contrib/, or set
gc.interval to let serve do it.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, d, _, err := s.open(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer d.Close()
			res, err := collectGarbage(cmd.Context(), cfg, d, dryRun)
			if err != nil {
				return err
			}
			return res.print(cmd.OutOrStdout())
		},
	}
	s.add(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be removed, remove nothing")
	return cmd
}
