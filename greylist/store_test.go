package greylist_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/greylist/storetest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openDB opens dsn, migrated, closed when the test ends.
func openDB(t testing.TB, dsn string) *db.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
