package decisionlog

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

func rowAt(tm time.Time) Row {
	return Row{Time: tm, Action: "DUNNO", Verb: VerbDunno, Sender: "a@example.net"}
}

func insertAt(t *testing.T, d *db.DB, times ...time.Time) {
	t.Helper()
	rows := make([]Row, len(times))
	for i, tm := range times {
		rows[i] = rowAt(tm)
	}
	if err := Insert(dbtest.Context(t), d, rows); err != nil {
		t.Fatal(err)
	}
}

// partitionOf says which table holds the row written at tm.
func partitionOf(t *testing.T, d *db.DB, tm time.Time) string {
	t.Helper()
	var name string
	err := d.PG.QueryRow(dbtest.Context(t),
		"SELECT tableoid::regclass::text FROM decisions WHERE time = $1", tm).Scan(&name)
	if err != nil {
		t.Fatalf("row at %v: %v", tm, err)
	}
	return name
}

func day(s string) time.Time {
	tm, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return tm
}

func TestEnsurePartitions(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	early := day("2026-10-20 08:00")
	insertAt(t, d, early) // no partition yet: the default one keeps it
	if got := partitionOf(t, d, early); got != "decisions_default" {
		t.Fatalf("row before any partition went to %s", got)
	}
	created, err := EnsurePartitions(ctx, d, day("2026-10-20 23:59"), 2)
	want := []string{"decisions_p20261020", "decisions_p20261021", "decisions_p20261022"}
	if err != nil || !slices.Equal(created, want) {
		t.Fatalf("EnsurePartitions = %v, %v; want %v", created, err, want)
	}
	// The stray row moved into its day's partition.
	if got := partitionOf(t, d, early); got != "decisions_p20261020" {
		t.Fatalf("stray row is in %s after its partition was created", got)
	}
	if created, err := EnsurePartitions(ctx, d, day("2026-10-21 00:00"), 2); err != nil || len(created) != 1 {
		t.Fatalf("second run created %v, %v; want only the new last day", created, err)
	}
	late := day("2026-10-22 13:00")
	insertAt(t, d, late)
	if got := partitionOf(t, d, late); got != "decisions_p20261022" {
		t.Fatalf("row went to %s", got)
	}
}

// Several hosts starting at once must not trip over each other.
func TestEnsurePartitionsConcurrent(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := EnsurePartitions(ctx, d, t0, 5)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	names, err := partitions(ctx, d)
	if err != nil || len(names) != 6 {
		t.Fatalf("partitions %v, %v; want 6", names, err)
	}
}

func TestPrunePostgres(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	if _, err := EnsurePartitions(ctx, d, day("2026-10-20 00:00"), 12); err != nil {
		t.Fatal(err)
	}
	// Two rows a day from Oct 20 to Nov 1, and old strays in the default
	// partition (Sept: no partition).
	var times []time.Time
	for i := range 13 {
		times = append(times, day("2026-10-20 06:00").AddDate(0, 0, i), day("2026-10-20 18:00").AddDate(0, 0, i))
	}
	for i := range 7 {
		times = append(times, day("2026-09-01 00:00").Add(time.Duration(i)*time.Minute))
	}
	insertAt(t, d, times...)
	now, retention := day("2026-11-01 12:00"), 10*24*time.Hour // cutoff Oct 22 12:00

	dry, err := Prune(ctx, d, now, retention, true)
	wantParts := []string{"decisions_p20261020", "decisions_p20261021"}
	if err != nil || !slices.Equal(dry.Partitions, wantParts) || dry.Rows != 4+7 {
		t.Fatalf("dry run = %+v, %v; want %v and 11 rows", dry, err, wantParts)
	}
	if n := countRows(t, d); n != len(times) {
		t.Fatalf("dry run removed rows: %d left of %d", n, len(times))
	}
	res, err := Prune(ctx, d, now, retention, false)
	if err != nil || !slices.Equal(res.Partitions, wantParts) || res.Rows != 11 {
		t.Fatalf("Prune = %+v, %v; want %v and 11 rows", res, err, wantParts)
	}
	// Oct 22's partition holds a row older than the cutoff (06:00) and one
	// newer; whole days only, so both stay.
	if n := countRows(t, d); n != len(times)-11 {
		t.Fatalf("%d rows left, want %d", n, len(times)-11)
	}
	if again, err := Prune(ctx, d, now, retention, false); err != nil || again.Rows != 0 || len(again.Partitions) != 0 {
		t.Fatalf("second Prune = %+v, %v; want nothing", again, err)
	}
}

func TestPruneSQLite(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	old := pruneBatch*2 + 17 // several batches, the last one short
	var times []time.Time
	for i := range old {
		times = append(times, day("2026-09-01 00:00").Add(time.Duration(i)*time.Second))
	}
	for i := range 5 {
		times = append(times, day("2026-10-25 00:00").Add(time.Duration(i)*time.Hour))
	}
	insertAt(t, d, times...)
	now, retention := day("2026-11-01 12:00"), 10*24*time.Hour
	dry, err := Prune(ctx, d, now, retention, true)
	if err != nil || dry.Rows != int64(old) || countRows(t, d) != len(times) {
		t.Fatalf("dry run = %+v, %v, %d rows left; want %d counted, none removed", dry, err, countRows(t, d), old)
	}
	res, err := Prune(ctx, d, now, retention, false)
	if err != nil || res.Rows != int64(old) || countRows(t, d) != 5 {
		t.Fatalf("Prune = %+v, %v, %d rows left; want %d removed, 5 left", res, err, countRows(t, d), old)
	}
	if !res.Cutoff.Equal(day("2026-10-22 12:00")) {
		t.Fatalf("cutoff %v", res.Cutoff)
	}
}

func TestExpiredKeepsPartialDays(t *testing.T) {
	names := map[string]bool{}
	for i := 18; i <= 23; i++ {
		names[fmt.Sprintf("decisions_p202610%d", i)] = true
	}
	got := expired(names, day("2026-10-21 00:00"))
	want := []string{"decisions_p20261018", "decisions_p20261019", "decisions_p20261020"}
	if !slices.Equal(got, want) {
		t.Fatalf("expired = %v, want %v", got, want)
	}
}
