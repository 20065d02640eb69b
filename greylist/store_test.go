package greylist_test

import (
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/greylist/storetest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openDB opens dsn, migrated, closed when the test ends.
func openDB(t testing.TB, dsn string) *db.DB { return dbtest.OpenDSN(t, dsn) }

func newStore(_ *testing.T, d *db.DB) greylist.Store { return greylist.NewStore(d) }

// batched opens the batched store of d with opts, closed before d is.
func batched(t *testing.T, d *db.DB, opts greylist.BatchOptions) greylist.Store {
	s, stop := greylist.NewBatchStore(d, opts)
	t.Cleanup(stop)
	return s
}

func newBatchStore(t *testing.T, d *db.DB) greylist.Store {
	return batched(t, d, greylist.BatchOptions{})
}

// pinnedFactory opens batched stores on a database of kind whose every
// group is exactly rows decisions: the window outlasts any test, so a
// group goes when it is full.
func pinnedFactory(kind string) storetest.BatchFactory {
	return func(t *testing.T) func(int) greylist.Store {
		open := dbtest.NewFactory(kind, func(_ *testing.T, d *db.DB) *db.DB { return d })(t)
		return func(rows int) greylist.Store {
			return batched(t, open(), greylist.BatchOptions{MaxRows: rows, Window: time.Hour})
		}
	}
}

func TestPostgresStore(t *testing.T) { storetest.Run(t, dbtest.NewFactory(db.Postgres, newStore)) }

func TestSQLiteStore(t *testing.T) { storetest.Run(t, dbtest.NewFactory(db.SQLite, newStore)) }

func TestPostgresBatchStore(t *testing.T) {
	storetest.Run(t, dbtest.NewFactory(db.Postgres, newBatchStore))
	storetest.RunBatch(t, pinnedFactory(db.Postgres))
}

func TestSQLiteBatchStore(t *testing.T) {
	storetest.Run(t, dbtest.NewFactory(db.SQLite, newBatchStore))
	storetest.RunBatch(t, pinnedFactory(db.SQLite))
}
