package ratelimit_test

import (
	"path/filepath"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/ratelimit/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func pgFactory(t *testing.T) func() ratelimit.Store {
	dsn := pgtest.New(t)
	return func() ratelimit.Store { return ratelimit.NewStore(dbtest.OpenDSN(t, dsn)) }
}

func sqliteFactory(t *testing.T) func() ratelimit.Store {
	path := filepath.Join(t.TempDir(), "ratelimit.db")
	return func() ratelimit.Store { return ratelimit.NewStore(dbtest.OpenDSN(t, path)) }
}

func TestPostgresStore(t *testing.T) { storetest.Run(t, pgFactory) }

func TestSQLiteStore(t *testing.T) { storetest.Run(t, sqliteFactory) }
