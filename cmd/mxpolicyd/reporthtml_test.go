package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// With metrics.report on, the metrics listener serves the HTML report of
// what the daemon decided; the policy listener answers as before.
func TestServeReportPage(t *testing.T) {
	dir, maddr := t.TempDir(), daemontest.FreeAddr(t)
	d := daemontest.Start(t, binary, daemontest.Options{Dir: dir,
		Config: "checks: {spf: {enabled: false}}\nmetrics: {listen: \"" + maddr + "\", report: true}\n"})
	if got := ask(t, d.Addr, "page@example.net"); !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("a new triplet: %q", got)
	}
	waitDecisions(t, filepath.Join(dir, "mxpolicyd.db"), 1)
	resp, err := http.Get("http://" + maddr + "/report")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/report: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`<svg id="chart-actions"`, ">greylist</text>", "Pending triplets"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/report lacks %q", want)
		}
	}
}

// waitDecisions polls the daemon's SQLite file until the decision log
// holds n rows: the writer flushes in batches, off the reply path.
func waitDecisions(t *testing.T, path string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := dbtest.OpenReadOnly(t, path)
	for {
		var got int
		if err := s.SQL.QueryRowContext(ctx, "SELECT count(*) FROM decisions").Scan(&got); err == nil && got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the decision log never held %d rows", n)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// On SQLite the daemon's store has one connection, which greylisting's
// decisions wait for, and a report's queries take seconds on a month of
// decisions (report/BENCHMARKS.md). The served report reads through a
// read-only handle of its own: while one of its reads is open, the store
// still writes at once (WAL: readers never block the writer).
func TestServedReportReadsBesideTheWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("checks: {spf: {enabled: false}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, checkDefaults(), func(c *config.Config) { c.Database = filepath.Join(dir, "mx.db") })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := openDaemon(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	ro, err := d.reportStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := ro.SQL.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM decisions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := d.db.SQL.ExecContext(wctx, "DELETE FROM greylist_triplet WHERE client_key = 'none'"); err != nil {
		t.Fatalf("the store's writer waited for the report's open read: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.SQL.ExecContext(wctx, "DELETE FROM greylist_triplet"); err == nil {
		t.Error("the report's handle could write")
	}
}
