// Package report prints the decision log's reporting views for
// `mxpolicyd report`: per-day counts, triplets deferred and never retried,
// and how long legitimate senders took to retry, as an aligned text table,
// JSON or CSV.
package report

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
)

// Report names, for Options.Report.
const (
	ReportDaily        = "daily"
	ReportNeverRetried = "never-retried"
	ReportRetryDelay   = "retry-delay"
	ReportAll          = "all"
)

// Formats, for Options.Format.
const (
	FormatText = "text"
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// Options select what Run prints.
type Options struct {
	Since  time.Time // rows from this instant (daily views: its UTC day) on; zero: all
	Format string    // text (default), json or csv; html is WriteHTML's
	Report string    // daily, never-retried, retry-delay or all (default)
	Limit  int       // never-retried: at most this many triplets, newest first; 0: all
}

// Validate checks what a user chose, before any database is opened: the
// report, the format (html too, which is WriteHTML's) and the limit.
func (o Options) Validate() error {
	if _, err := reportNames(o.Report); err != nil {
		return err
	}
	if o.Format != FormatHTML {
		if _, err := formatter(o.Format); err != nil {
			return err
		}
	}
	if o.Limit < 0 {
		return fmt.Errorf("report: limit %d: want 0 (all) or more", o.Limit)
	}
	return nil
}

// Run queries the chosen views and writes them to w. With several
// reports, text prints them one after the other under titles, JSON prints
// one object with a member per report, CSV separates them by a blank line.
func Run(ctx context.Context, d *db.DB, opt Options, w io.Writer) error {
	names, err := reportNames(opt.Report)
	if err != nil {
		return err
	}
	format, err := formatter(opt.Format)
	if err != nil {
		return err
	}
	var tables []*table
	for _, name := range names {
		t, err := build(ctx, d, name, opt)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	if err := format(w, tables); err != nil {
		return fmt.Errorf("report: write: %w", err)
	}
	return nil
}

func reportNames(r string) ([]string, error) {
	switch r {
	case "", ReportAll:
		return []string{ReportDaily, ReportRetryDelay, ReportNeverRetried}, nil
	case ReportDaily, ReportNeverRetried, ReportRetryDelay, ReportRateLimit:
		return []string{r}, nil
	}
	return nil, fmt.Errorf("report: unknown report %s (want daily, never-retried, retry-delay, ratelimit or all)", quote.Short(r))
}

func formatter(f string) (func(io.Writer, []*table) error, error) {
	switch f {
	case "", FormatText:
		return writeText, nil
	case FormatJSON:
		return writeJSON, nil
	case FormatCSV:
		return writeCSV, nil
	}
	return nil, fmt.Errorf("report: unknown format %s (want text, json, csv or html)", quote.Short(f))
}

func build(ctx context.Context, d *db.DB, name string, opt Options) (*table, error) {
	switch name {
	case ReportDaily:
		rows, err := Daily(ctx, d, opt.Since)
		return dailyTable(rows), err
	case ReportRetryDelay:
		rows, err := RetryDelay(ctx, d, opt.Since)
		return retryTable(rows), err
	case ReportRateLimit:
		rows, err := RateLimit(ctx, d, opt.Since)
		return rateLimitTable(rows), err
	default:
		rows, err := NeverRetried(ctx, d, opt.Since, opt.Limit)
		return neverTable(rows), err
	}
}
