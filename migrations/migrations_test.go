package migrations_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Both stores have the same versions, so a feature never exists on one only.
func TestSameVersionsForBothStores(t *testing.T) {
	pg, err := migrations.List(db.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	lite, err := migrations.List(db.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ms []migrations.Migration) (out []string) {
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if !slices.Equal(names(pg), names(lite)) {
		t.Fatalf("postgres %v vs sqlite %v", names(pg), names(lite))
	}
	if len(pg) == 0 || pg[0].Name != "0001_greylist" {
		t.Fatalf("first migration %v", names(pg))
	}
}

func stores(t *testing.T) map[string]func() string {
	return map[string]func() string{
		db.Postgres: func() string { return pgtest.New(t) },
		db.SQLite:   func() string { return filepath.Join(t.TempDir(), "mx.db") },
	}
}

func TestApplyThenUpToDate(t *testing.T) {
	for kind, dsn := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := dbtest.Context(t)
			d, err := db.Open(ctx, dsn(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			all, _ := migrations.List(kind)
			pending, err := migrations.Pending(ctx, d)
			if err != nil || len(pending) != len(all) {
				t.Fatalf("fresh database: pending %v, %v; want all %d", pending, err, len(all))
			}
			applied, err := migrations.Apply(ctx, d)
			if err != nil || len(applied) != len(all) {
				t.Fatalf("first Apply: %v, %v", applied, err)
			}
			applied, err = migrations.Apply(ctx, d)
			if err != nil || len(applied) != 0 {
				t.Fatalf("second Apply: %v, %v; want nothing", applied, err)
			}
			st, err := migrations.Status(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st {
				if !s.Applied || s.AppliedAt.IsZero() {
					t.Errorf("%s not recorded as applied: %+v", s.Name, s)
				}
			}
		})
	}
}

// Several daemons starting at once on one database: every migration runs
// exactly once and nobody fails.
func TestConcurrentApply(t *testing.T) {
	for kind, dsn := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := dbtest.Context(t)
			target := dsn()
			const hosts = 6
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				total []string
			)
			for i := 0; i < hosts; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d, err := db.Open(ctx, target, nil)
					if err != nil {
						t.Error(err)
						return
					}
					defer d.Close()
					applied, err := migrations.Apply(ctx, d)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total = append(total, applied...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			all, _ := migrations.List(kind)
			slices.Sort(total)
			var want []string
			for _, m := range all {
				want = append(want, m.Name)
			}
			if !slices.Equal(total, want) {
				t.Fatalf("applied across hosts %v, want each of %v exactly once", total, want)
			}
		})
	}
}

// The reporting views come from one shared text (shared/report_views.sql):
// every kind renders it fully, and both stores end with the same views and
// columns.
func TestReportViewsSameOnBothStores(t *testing.T) {
	cols := map[string]map[string][]string{}
	for kind, dsn := range stores(t) {
		ctx := dbtest.Context(t)
		ms, err := migrations.List(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if strings.Contains(m.SQL, "{{") {
				t.Errorf("%s %s: template not rendered", kind, m.Name)
			}
		}
		d, err := db.Open(ctx, dsn(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := migrations.Apply(ctx, d); err != nil {
			t.Fatal(err)
		}
		cols[kind] = viewColumns(t, ctx, d)
	}
	pg, lite := cols[db.Postgres], cols[db.SQLite]
	if len(pg) != 4 || !reflect.DeepEqual(pg, lite) { // report_ratelimit since 0004
		t.Fatalf("views differ:\npostgres %v\nsqlite   %v", pg, lite)
	}
}

// viewColumns lists each report_* view's columns in order.
func viewColumns(t *testing.T, ctx context.Context, d *db.DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	add := func(view, col string) { out[view] = append(out[view], col) }
	var err error
	if d.IsPostgres() {
		var rows pgx.Rows
		rows, err = d.PG.Query(ctx, `SELECT table_name::text, column_name::text FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name LIKE 'report\_%' ORDER BY table_name, ordinal_position`)
		if err == nil {
			var view, col string
			_, err = pgx.ForEachRow(rows, []any{&view, &col}, func() error { add(view, col); return nil })
		}
	} else {
		var rows *sql.Rows
		rows, err = d.SQL.QueryContext(ctx, `SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
			WHERE m.type = 'view' AND m.name LIKE 'report\_%' ESCAPE '\' ORDER BY m.name, c.cid`)
		for err == nil && rows.Next() {
			var view, col string
			if err = rows.Scan(&view, &col); err == nil {
				add(view, col)
			}
		}
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}
