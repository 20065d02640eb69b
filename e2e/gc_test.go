package e2e

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// agedSet has, under tag, a pending triplet past the retry window and a
// passed one unseen for max age (both expired), and a fresh one of each.
// The clock of another process cannot be injected, so the rows carry old
// times instead.
func agedSet(tag string, now time.Time) greylist.ImportSet {
	nw := netip.MustParsePrefix("192.0.2.0/24")
	addr := nw.Addr()
	t := func(sender string, first, last, passed time.Duration) greylist.ImportTriplet {
		x := greylist.ImportTriplet{Net: nw, Addr: addr, Sender: sender + "-" + tag + "@x.test", Recipient: "r@y.test",
			FirstSeen: now.Add(-first), LastSeen: now.Add(-last)}
		if passed > 0 {
			x.PassedAt = now.Add(-passed)
		}
		return x
	}
	day := 24 * time.Hour
	return greylist.ImportSet{Triplets: []greylist.ImportTriplet{
		t("oldpending", 3*day, 3*day, 0),
		t("oldpassed", 60*day, 40*day, 60*day-time.Hour),
		t("freshpending", time.Minute, time.Minute, 0),
		t("freshpassed", 2*day, time.Hour, 2*day-time.Hour),
	}}
}

func loadAged(t *testing.T, database, tag string) {
	t.Helper()
	d := dbtest.OpenDSN(t, database)
	if _, err := greylist.NewAdmin(d, greylist.DefaultConfig()).Import(dbtest.Context(t), agedSet(tag, time.Now())); err != nil {
		t.Fatal(err)
	}
	d.Close()
}

// remaining lists the senders of tag still stored.
func remaining(t *testing.T, database, tag string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(mx(t, "greylist", "list", "--database", database, "--format", "csv", "--limit", "0"), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 2 && strings.HasSuffix(f[2], "-"+tag+"@x.test") {
			out = append(out, strings.TrimSuffix(f[2], "-"+tag+"@x.test"))
		}
	}
	return out
}

func wantRemaining(t *testing.T, got []string) {
	t.Helper()
	if strings.Join(got, " ") != "freshpassed freshpending" && strings.Join(got, " ") != "freshpending freshpassed" {
		t.Errorf("after gc: %v, want the fresh pending and passed triplets only", got)
	}
}

// endedDay creates yesterday's decision-log partition, as a daemon
// running then would have, and returns its name.
func endedDay(t *testing.T, database string) string {
	t.Helper()
	d := dbtest.OpenDSN(t, database)
	defer d.Close()
	created, err := decisionlog.EnsurePartitions(dbtest.Context(t), d, time.Now().AddDate(0, 0, -1), 0)
	if err != nil || len(created) != 1 {
		t.Fatalf("yesterday's partition: %v, %v", created, err)
	}
	return created[0]
}

// gc removes expired pending and passed triplets and keeps fresh ones, as
// the command and inside serve (gc.interval, at least a minute).
func TestGCEndToEnd(t *testing.T) {
	requireBinary(t)
	t.Parallel()
	eachStore(t, func(t *testing.T, database string) {
		var yesterday string // a partition whose day has ended
		if database == "" {
			database = filepath.Join(t.TempDir(), "mx.db")
		} else {
			yesterday = endedDay(t, database)
		}
		loadAged(t, database, "cmd")
		dry := mx(t, "gc", "--database", database, "--dry-run")
		wantIn(t, dry, "would remove 1 pending triplets", "1 passed triplets")
		out := mx(t, "gc", "--database", database)
		wantIn(t, out, "removed 1 pending triplets", "1 passed triplets")
		if yesterday != "" {
			wantIn(t, dry, "decisions: would index 1 ended days by client ("+yesterday+")")
			wantIn(t, out, "decisions: indexed 1 ended days by client ("+yesterday+")")
		} else if strings.Contains(out+dry, "by client") {
			t.Errorf("gc on SQLite speaks of indexing days:\n%s\n%s", dry, out)
		}
		wantRemaining(t, remaining(t, database, "cmd"))

		loadAged(t, database, "serve")
		d := startDaemon(t, daemontest.Options{Config: baseConfig + "gc:\n  interval: 1m\n", Database: database})
		deadline := time.Now().Add(90 * time.Second)
		for len(d.Records("scheduled gc done")) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no scheduled gc within 90s:\n%s", d.Log)
			}
			time.Sleep(500 * time.Millisecond)
		}
		rec := d.Records("scheduled gc done")[0]
		if rec["pending"] != 1.0 || rec["passed"] != 1.0 {
			t.Errorf("scheduled gc removed pending %v, passed %v; want 1 and 1", rec["pending"], rec["passed"])
		}
		wantRemaining(t, remaining(t, database, "serve"))
	})
}
