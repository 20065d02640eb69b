package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// expiredTriplets is how many pending triplets past the retry window the
// SQLite store holds when gc runs beside the daemon: a hundred of gc's
// batches, or four under the race detector, whose SQLite takes about a
// second a batch.
func expiredTriplets() int {
	if daemontest.Race {
		return 4 * greylist.DefaultConfig().GCBatch
	}
	return 100 * greylist.DefaultConfig().GCBatch
}

// gcBesideConfig is baseConfig, and under the race detector a greylist
// share above what one of its gc batches takes (one to two seconds on a
// busy machine, against the default share of 1.5 s): a decision waits for
// at most one batch, which this test holds it to, and should then still
// get greylisting's answer rather than fail open.
func gcBesideConfig() string {
	if !daemontest.Race {
		return baseConfig
	}
	return `
request_timeout: 8s
checks:
  spf:
    enabled: false
  greylist:
    timeout: 4500ms
`
}

// The zero-setup store is a SQLite file, and the Debian package's timer
// runs "mxpolicyd gc" in a process of its own beside the daemon. SQLite
// has one write lock per file and no queue for it: the daemon's decisions
// get it between gc's batches, which pause for it (db.SQLiteDeleteBatches).
func TestGCBesideServeSQLite(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	dir := t.TempDir()
	database := filepath.Join(dir, "mx.db")
	n := expiredTriplets()
	d := dbtest.OpenDSN(t, database)
	if _, err := d.SQL.Exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
INSERT INTO greylist_triplet (client_key, sender, recipient, key_kind, client_net, client_addr,
	raw_sender, first_seen, last_seen, passed_at, attempts, passes)
SELECT 'net:10.' || (i / 65536) || '.' || (i / 256 % 256) || '.0/24', 's' || i || '@old.test', 'r' || (i % 5000) || '@example.test',
	'net', '10.0.0.0/24', '10.0.0.1', 's' || i || '@old.test', ?2, ?2, NULL, 1, 0 FROM c`,
		n, time.Now().Add(-5*24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	d.Close()

	srv := startDaemon(t, daemontest.Options{Database: database, Config: gcBesideConfig()})
	load := startLoad(t, srv.Addr, loadOptions{Conns: 4, Pause: 5 * time.Millisecond, Triplet: freshTriplets("beside")})
	time.Sleep(500 * time.Millisecond)
	began := load.Since()
	start := time.Now()
	out, err := exec.Command(binary, "gc", "--database", database).CombinedOutput()
	took := time.Since(start)
	ended := load.Since()
	if err != nil {
		t.Fatalf("mxpolicyd gc: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("removed %d pending triplets", n)) {
		t.Errorf("gc did not remove the %d expired triplets:\n%s", n, out)
	}
	s := load.Stop()
	assertAnswered(t, s)
	var during []result
	for _, r := range s.Results {
		if r.Done() > began && r.At < ended {
			during = append(during, r)
		}
	}
	slowest := time.Duration(0)
	for _, r := range during {
		slowest = max(slowest, r.Latency)
		if r.Verb() != verbDefer {
			t.Errorf("a new triplet while gc ran: %q, want the deferral", r.Action)
			break
		}
	}
	// A decision may wait for one batch, and for the sleep of SQLite's
	// busy handler that brings it back: bounded by twice gc's time per
	// batch, and 100 ms. Without pauses between the batches (about 12 ms
	// each, the gc 1.2 s), decisions waited 0.2 to 1.2 s.
	limit := 2*took/time.Duration(n/greylist.DefaultConfig().GCBatch) + 100*time.Millisecond
	t.Logf("figures: gc of %d triplets took %v; %d decisions overlapped it, the slowest %v (limit %v)",
		n, took.Round(time.Millisecond), len(during), slowest.Round(time.Millisecond), limit.Round(time.Millisecond))
	if len(during) == 0 {
		t.Fatal("no decision overlapped gc: inconclusive")
	}
	if slowest > limit {
		t.Errorf("a decision waited %v while gc ran, want at most %v", slowest, limit)
	}
}
