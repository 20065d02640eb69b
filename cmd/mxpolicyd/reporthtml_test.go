package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
