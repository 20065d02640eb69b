package migrations

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
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
