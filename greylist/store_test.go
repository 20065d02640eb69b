package greylist_test

import (
	"path/filepath"
	"testing"

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

func TestPostgresStore(t *testing.T) { storetest.Run(t, pgFactory) }

func TestSQLiteStore(t *testing.T) { storetest.Run(t, sqliteFactory) }
