// Package dltest opens migrated test stores for the decision log and the
// reports: a SQLite file in a temp dir and a fresh database on a real
// PostgreSQL server (internal/pgtest), so each test runs against both.
// Packages using it must call pgtest.Main from TestMain.
package dltest

import (
	"context"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// Context returns a context that ends with the test, or after 60 s.
func Context(t testing.TB) context.Context { return dbtest.Context(t) }

// Open returns a migrated store of the kind (db.SQLite or db.Postgres),
// closed when the test ends.
func Open(t testing.TB, kind string) *db.DB { return dbtest.Open(t, kind) }

// Each runs f as a subtest on each kind of store.
func Each(t *testing.T, f func(t *testing.T, d *db.DB)) {
	for _, kind := range []string{db.SQLite, db.Postgres} {
		t.Run(kind, func(t *testing.T) { f(t, Open(t, kind)) })
	}
}
