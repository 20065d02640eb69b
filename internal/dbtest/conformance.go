package dbtest

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// Factory prepares a fresh, migrated database for one test and returns a
// function that opens a store S on it. Each call of open is another
// "daemon": its own connections to the same database. A package's
// conformance suite (greylist/storetest, ratelimit/storetest) runs every
// case against the Factory of each kind.
type Factory[S any] func(t *testing.T) (open func() S)

// NewFactory returns the Factory of kind (db.SQLite or db.Postgres) whose
// open makes a store with newStore on a new connection.
func NewFactory[S any](kind string, newStore func(t *testing.T, d *db.DB) S) Factory[S] {
	return func(t *testing.T) func() S {
		dsn := fresh(t, kind)
		if kind == db.Postgres {
			dsn = pgtest.WithConnectTimeout(dsn, 10*time.Second)
		}
		return func() S { return newStore(t, OpenDSN(t, dsn)) }
	}
}

// Cases are the named cases of a conformance suite, in the order they run.
type Cases[S any] []struct {
	Name string
	Run  func(*testing.T, Factory[S])
}

// RunCases runs each case as a subtest against f.
func RunCases[S any](t *testing.T, f Factory[S], cases Cases[S]) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, f) })
	}
}
