// Package dbtest opens migrated stores for tests: a SQLite file in the
// test's temp dir, or a fresh database on the real PostgreSQL server that
// pgtest provides (never a fake).
package dbtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/migrations"
)

// Context is a context for a test's store calls, cancelled when it ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// OpenDSN opens dsn, applies the migrations, and closes it when the test
// ends.
func OpenDSN(t testing.TB, dsn string) *db.DB {
	t.Helper()
	ctx := Context(t)
	d, err := db.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if _, err := migrations.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// OpenReadOnly opens dsn as check and report do (db.OpenReadOnly: a
// SQLite file must exist, a PostgreSQL session refuses writes, nothing is
// migrated) and closes it when the test ends.
func OpenReadOnly(t testing.TB, dsn string) *db.DB {
	t.Helper()
	d, err := db.OpenReadOnly(Context(t), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// Open returns a fresh migrated store of kind (db.SQLite or db.Postgres).
func Open(t testing.TB, kind string) *db.DB {
	t.Helper()
	return OpenDSN(t, fresh(t, kind))
}

// fresh returns the DSN of a new, empty database of kind: one on pgtest's
// server, or a file in the test's temp dir.
func fresh(t testing.TB, kind string) string {
	t.Helper()
	if kind == db.Postgres {
		return pgtest.New(t)
	}
	return filepath.Join(t.TempDir(), "mx.db")
}

// Each runs f as a subtest on each kind of store.
func Each(t *testing.T, f func(t *testing.T, d *db.DB)) {
	for _, kind := range []string{db.SQLite, db.Postgres} {
		t.Run(kind, func(t *testing.T) { f(t, Open(t, kind)) })
	}
}
