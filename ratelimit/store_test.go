package ratelimit_test

import (
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/ratelimit/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newStore(_ *testing.T, d *db.DB) ratelimit.Store { return ratelimit.NewStore(d) }

func TestPostgresStore(t *testing.T) { storetest.Run(t, dbtest.NewFactory(db.Postgres, newStore)) }

func TestSQLiteStore(t *testing.T) { storetest.Run(t, dbtest.NewFactory(db.SQLite, newStore)) }
