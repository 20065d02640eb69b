package greylist_test

import (
	"path/filepath"
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

func pgFactory(t *testing.T) func() greylist.Store {
	dsn := pgtest.New(t)
	return func() greylist.Store { return greylist.NewStore(openDB(t, dsn)) }
}

func sqliteFactory(t *testing.T) func() greylist.Store {
	path := filepath.Join(t.TempDir(), "greylist.db")
	return func() greylist.Store { return greylist.NewStore(openDB(t, path)) }
}

// batched opens the batched store of d with opts, closed before d is.
func batched(t *testing.T, d *db.DB, opts greylist.BatchOptions) greylist.Store {
	s, stop := greylist.NewBatchStore(d, opts)
	t.Cleanup(stop)
	return s
}

// pinned makes every group exactly rows decisions: the window outlasts
// any test, so a group goes when it is full.
func pinned(rows int) greylist.BatchOptions {
	return greylist.BatchOptions{MaxRows: rows, Window: time.Hour}
}

func pgBatchFactory(t *testing.T) func() greylist.Store {
	dsn := pgtest.New(t)
	return func() greylist.Store { return batched(t, openDB(t, dsn), greylist.BatchOptions{}) }
}

func sqliteBatchFactory(t *testing.T) func() greylist.Store {
	path := filepath.Join(t.TempDir(), "greylist.db")
	return func() greylist.Store { return batched(t, openDB(t, path), greylist.BatchOptions{}) }
}

func pgPinnedFactory(t *testing.T) func(int) greylist.Store {
	dsn := pgtest.New(t)
	return func(rows int) greylist.Store { return batched(t, openDB(t, dsn), pinned(rows)) }
}

func sqlitePinnedFactory(t *testing.T) func(int) greylist.Store {
	path := filepath.Join(t.TempDir(), "greylist.db")
	return func(rows int) greylist.Store { return batched(t, openDB(t, path), pinned(rows)) }
}

func TestPostgresStore(t *testing.T) { storetest.Run(t, pgFactory) }

func TestSQLiteStore(t *testing.T) { storetest.Run(t, sqliteFactory) }

func TestPostgresBatchStore(t *testing.T) {
	storetest.Run(t, pgBatchFactory)
	storetest.RunBatch(t, pgPinnedFactory)
}

func TestSQLiteBatchStore(t *testing.T) {
	storetest.Run(t, sqliteBatchFactory)
	storetest.RunBatch(t, sqlitePinnedFactory)
}
