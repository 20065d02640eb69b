package migrations

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// applyUpTo applies d's migrations before the one named name, and
// returns them all and name's index, for a test of name's upgrade.
func applyUpTo(ctx context.Context, t *testing.T, d *db.DB, name string) ([]Migration, int) {
	t.Helper()
	ms, err := List(d.Kind())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m Migration) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("no migration %s", name)
	}
	if _, err := apply(ctx, d, ms[:i]); err != nil {
		t.Fatal(err)
	}
	return ms, i
}

// 0007 rebuilds SQLite's decisions table for its verb CHECK: the rows
// written before it are all still there, the views read the new table,
// and a verb outside the list is still refused.
func TestSQLiteVerbCheckRebuildKeepsRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "mx.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ms, i := applyUpTo(ctx, t, d, "0007_decisions_verb_check")
	const insert = "INSERT INTO decisions (time, client, action, verb) VALUES (?, ?, ?, ?)"
	verbs := []string{"DUNNO", "PREPEND", "WARN", "DEFER", "REJECT", "HOLD"}
	for k, v := range verbs {
		if _, err := d.SQL.ExecContext(ctx, insert, 1_700_000_000+k, "192.0.2.1", v, v); err != nil {
			t.Fatalf("before 0007, verb %s: %v", v, err)
		}
	}
	if applied, err := apply(ctx, d, ms); err != nil || len(applied) != len(ms)-i {
		t.Fatalf("applying from 0007: %v, %v", applied, err)
	}
	var n int
	if err := d.SQL.QueryRowContext(ctx, "SELECT count(DISTINCT verb) FROM decisions WHERE client = '192.0.2.1'").Scan(&n); err != nil || n != len(verbs) {
		t.Fatalf("after 0007: %d distinct verbs kept, %v; want %d", n, err, len(verbs))
	}
	if _, err := d.SQL.ExecContext(ctx, "SELECT count(*) FROM report_daily"); err != nil {
		t.Errorf("report_daily after 0007: %v", err)
	}
	if _, err := d.SQL.ExecContext(ctx, "SELECT count(*) FROM report_ratelimit"); err != nil {
		t.Errorf("report_ratelimit after 0007: %v", err)
	}
	for _, v := range append(verbs, "dunno") {
		_, err := d.SQL.ExecContext(ctx, insert, 1_800_000_000, "192.0.2.2", v, v)
		if ok := v != "dunno"; (err == nil) != ok {
			t.Errorf("after 0007, verb %q: err %v, want accepted %v", v, err, ok)
		}
	}
}

// A second process migrating a SQLite store while the first holds its
// write lock longer than the busy timeout (a large rebuild) waits for it,
// as on PostgreSQL, rather than fail with "database is locked".
func TestSQLiteApplyWaitsForAnotherMigration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "mx.db")
	first, err := db.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	ms, _ := applyUpTo(ctx, t, first, "0002_whitelist")
	second, err := db.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	tx, err := first.SQL.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock, as a migration holds it
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := apply(ctx, second, ms)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("apply did not wait for the write lock: %v", err)
	case <-time.After(sqliteLockHeld):
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply after the lock was released: %v", err)
	}
}

// sqliteLockHeld is longer than the store's busy timeout (5 s).
const sqliteLockHeld = 6 * time.Second

// Views of the administrator's own, on the decisions table and on a
// report view, survive every upgrade from the first schema that has them
// (docs/reporting.md: the views are there for your own SQL).
func TestUpgradeKeepsOwnViews(t *testing.T) {
	for kind, dsn := range map[string]func() string{
		db.Postgres: func() string { return pgtest.New(t) },
		db.SQLite:   func() string { return filepath.Join(t.TempDir(), "mx.db") },
	} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d, err := db.Open(ctx, dsn(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ms, i := applyUpTo(ctx, t, d, "0004_ratelimit")
			// 0004 makes report_ratelimit: a view on it needs one more step.
			if _, err := apply(ctx, d, ms[i:i+1]); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"CREATE VIEW my_holds AS SELECT time, client FROM decisions WHERE verb = 'HOLD'",
				"CREATE VIEW my_ratelimit AS SELECT day, rule, hits FROM report_ratelimit",
			} {
				if err := exec(ctx, d, q); err != nil {
					t.Fatal(err)
				}
			}
			if applied, err := apply(ctx, d, ms); err != nil || len(applied) != len(ms)-i-1 {
				t.Fatalf("upgrading past own views: applied %v, %v", applied, err)
			}
			for _, q := range []string{"SELECT count(*) FROM my_holds", "SELECT count(*) FROM my_ratelimit"} {
				if err := exec(ctx, d, q); err != nil {
					t.Errorf("%s after the upgrade: %v", q, err)
				}
			}
		})
	}
}

func exec(ctx context.Context, d *db.DB, q string) error {
	if d.IsPostgres() {
		_, err := d.PG.Exec(ctx, q)
		return err
	}
	_, err := d.SQL.ExecContext(ctx, q)
	return err
}
