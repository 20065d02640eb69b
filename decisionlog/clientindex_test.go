package decisionlog

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// clientIndexes lists the valid indexes on table whose key starts with
// client.
func clientIndexes(t *testing.T, d *db.DB, table string) []string {
	t.Helper()
	rows, err := d.PG.Query(dbtest.Context(t), `SELECT ic.relname FROM pg_index x
		JOIN pg_class ic ON ic.oid = x.indexrelid
		JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
		WHERE x.indrelid = $1::regclass AND a.attname = 'client' AND x.indisvalid
		ORDER BY 1`, table)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// lookupPlan is the plan of a per-client lookup of one day's rows, with
// sequential scans priced out so any usable index shows.
func lookupPlan(t *testing.T, d *db.DB, from time.Time) string {
	t.Helper()
	var plan []string
	err := pgx.BeginFunc(dbtest.Context(t), d.PG, func(tx pgx.Tx) error {
		ctx := dbtest.Context(t)
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN SELECT * FROM decisions
			WHERE client = '192.0.2.7' AND time >= $1 AND time < $2`, from, from.AddDate(0, 0, 1))
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// octoberDays opens a PostgreSQL store with the partitions of Oct 20,
// 2026 and the ahead days after it.
func octoberDays(t *testing.T, ahead int) (*db.DB, context.Context) {
	t.Helper()
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	if _, err := EnsurePartitions(ctx, d, day("2026-10-20 00:00"), ahead); err != nil {
		t.Fatal(err)
	}
	return d, ctx
}

func TestIndexClosedDays(t *testing.T) {
	d, ctx := octoberDays(t, 2)
	var rows []Row
	for i := range 3 {
		r := rowAt(day("2026-10-20 12:00").AddDate(0, 0, i))
		r.Client = netip.MustParseAddr("192.0.2.7")
		rows = append(rows, r)
	}
	if err := Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	// The migrations leave no client index to keep up row by row.
	for _, p := range []string{"decisions", "decisions_p20261020", "decisions_p20261021", "decisions_default"} {
		if got := clientIndexes(t, d, p); len(got) != 0 {
			t.Fatalf("%s has client indexes %v before any day ended", p, got)
		}
	}

	// Oct 20 ends at midnight: only its partition gets the index. A dry
	// run names it and builds nothing.
	done, err := IndexClosedDays(ctx, d, day("2026-10-21 00:00"), true)
	if err != nil || !slices.Equal(done, []string{"decisions_p20261020"}) {
		t.Fatalf("dry run = %v, %v; want Oct 20 only", done, err)
	}
	if got := clientIndexes(t, d, "decisions_p20261020"); len(got) != 0 {
		t.Fatalf("the dry run built %v", got)
	}
	done, err = IndexClosedDays(ctx, d, day("2026-10-21 00:00"), false)
	if err != nil || !slices.Equal(done, []string{"decisions_p20261020"}) {
		t.Fatalf("IndexClosedDays = %v, %v; want Oct 20 only", done, err)
	}
	if got := clientIndexes(t, d, "decisions_p20261020"); !slices.Equal(got, []string{"decisions_p20261020_client_idx"}) {
		t.Fatalf("Oct 20's client indexes: %v", got)
	}
	if got := clientIndexes(t, d, "decisions_p20261021"); len(got) != 0 {
		t.Fatalf("today's partition got client indexes %v", got)
	}
	if plan := lookupPlan(t, d, day("2026-10-20 00:00")); !strings.Contains(plan, "decisions_p20261020_client_idx") {
		t.Errorf("a lookup of Oct 20 by client does not use its index:\n%s", plan)
	}
	if done, err := IndexClosedDays(ctx, d, day("2026-10-21 23:59"), false); err != nil || len(done) != 0 {
		t.Fatalf("second run = %v, %v; want nothing to do", done, err)
	}

	// Two days later, the two more days that ended.
	done, err = IndexClosedDays(ctx, d, day("2026-10-23 00:00"), false)
	if want := []string{"decisions_p20261021", "decisions_p20261022"}; err != nil || !slices.Equal(done, want) {
		t.Fatalf("IndexClosedDays = %v, %v; want %v", done, err, want)
	}
}

// A build that failed leaves an invalid index (CREATE INDEX
// CONCURRENTLY's documented failure mode), which the planner never uses;
// the next run replaces it.
func TestIndexClosedDaysRebuildsInvalid(t *testing.T) {
	d, ctx := octoberDays(t, 0)
	now := day("2026-10-21 06:00")
	if _, err := IndexClosedDays(ctx, d, now, false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PG.Exec(ctx, `UPDATE pg_index SET indisvalid = false
		WHERE indexrelid = 'decisions_p20261020_client_idx'::regclass`); err != nil {
		t.Fatal(err)
	}
	if got := clientIndexes(t, d, "decisions_p20261020"); len(got) != 0 {
		t.Fatalf("the invalid index still counts: %v", got)
	}
	done, err := IndexClosedDays(ctx, d, now, false)
	if err != nil || !slices.Equal(done, []string{"decisions_p20261020"}) {
		t.Fatalf("IndexClosedDays = %v, %v; want Oct 20 rebuilt", done, err)
	}
	if got := clientIndexes(t, d, "decisions_p20261020"); len(got) != 1 {
		t.Fatalf("after the rebuild: %v", got)
	}
}

// Hosts running gc at once: one builds, the others skip, none fails, and
// the lock is free again afterwards.
func TestIndexClosedDaysConcurrent(t *testing.T) {
	d, ctx := octoberDays(t, 4)
	now := day("2026-10-25 00:00")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []string
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := IndexClosedDays(ctx, d, now, false)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, done...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(all)
	want := []string{"decisions_p20261020", "decisions_p20261021", "decisions_p20261022",
		"decisions_p20261023", "decisions_p20261024"}
	if !slices.Equal(all, want) {
		t.Fatalf("built %v; want each ended day once: %v", all, want)
	}
	if buildLockHeld(t, d) {
		t.Fatal("the build lock is still held")
	}
}

// buildLockHeld says whether any session holds clientIndexLockID. A
// bigint advisory lock shows in pg_locks as its high and low 32 bits.
func buildLockHeld(t *testing.T, d *db.DB) bool {
	t.Helper()
	var held bool
	err := d.PG.QueryRow(dbtest.Context(t), `SELECT count(*) > 0 FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		AND classid::text::bigint = $1::bigint >> 32 AND objid::text::bigint = $1::bigint & 4294967295`,
		clientIndexLockID).Scan(&held)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// While another host holds the lock, gc leaves the building to it.
func TestIndexClosedDaysSkipsWhileLocked(t *testing.T) {
	d, ctx := octoberDays(t, 0)
	other, err := d.PG.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", clientIndexLockID); err != nil {
		t.Fatal(err)
	}
	if !buildLockHeld(t, d) {
		t.Fatal("buildLockHeld does not see the lock")
	}
	now := day("2026-10-21 00:00")
	if done, err := IndexClosedDays(ctx, d, now, false); err != nil || len(done) != 0 {
		t.Fatalf("IndexClosedDays = %v, %v while another host builds; want nothing", done, err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", clientIndexLockID); err != nil {
		t.Fatal(err)
	}
	if done, err := IndexClosedDays(ctx, d, now, false); err != nil || len(done) != 1 {
		t.Fatalf("IndexClosedDays = %v, %v once the lock is free; want Oct 20", done, err)
	}
}

// A build cut off by its context (gc's run limit) returns the error and
// leaves no connection holding the lock: the next run builds the day.
func TestIndexClosedDaysCancelled(t *testing.T) {
	d, ctx := octoberDays(t, 0)
	// A report's exclusive lock on the partition holds the build at its
	// start until the context ends.
	blocker, err := d.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx) //nolint:errcheck // test cleanup
	if _, err := blocker.Exec(ctx, "LOCK TABLE decisions_p20261020 IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	now := day("2026-10-21 00:00")
	if done, err := IndexClosedDays(short, d, now, false); err == nil || len(done) != 0 {
		t.Fatalf("IndexClosedDays past its deadline = %v, %v; want an error", done, err)
	}
	// The server notices the closed connection within its check
	// interval (checkClientSQL) and ends the build, though the lock it
	// waits for is still held.
	for deadline := time.Now().Add(10 * time.Second); buildLockHeld(t, d); {
		if time.Now().After(deadline) {
			t.Fatal("the build lock outlived the cancelled run by 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if done, err := IndexClosedDays(ctx, d, now, false); err != nil || len(done) != 1 {
		t.Fatalf("the next run = %v, %v; want Oct 20", done, err)
	}
}

func TestIndexClosedDaysSQLite(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	if done, err := IndexClosedDays(ctx, d, time.Now(), false); err != nil || done != nil {
		t.Fatalf("IndexClosedDays on SQLite = %v, %v; want a no-op", done, err)
	}
	// SQLite keeps no index by client (migrations/sqlite/0012): only the
	// one on time.
	var names []string
	rows, err := d.SQL.QueryContext(ctx, `SELECT name FROM sqlite_master
		WHERE type = 'index' AND tbl_name = 'decisions' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil || !slices.Equal(names, []string{"decisions_time_idx"}) {
		t.Fatalf("SQLite's decisions indexes: %q, %v; want decisions_time_idx alone", names, err)
	}
}

// A day another host's gc dropped after this one listed it is skipped,
// not an error that fails the whole gc run.
func TestBuildClientIndexDroppedMeanwhile(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	conn, err := d.PG.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, invalid := range []bool{false, true} {
		built, err := buildClientIndex(ctx, conn, dayIndex{partition: "decisions_p20261019", invalid: invalid})
		if built || err != nil {
			t.Errorf("a vanished partition (invalid %v): built %v, %v; want skipped", invalid, built, err)
		}
	}
}
