package pgtest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Both DSN forms carry the connect timeout that pgx then uses, and keep
// the database they named.
func TestWithConnectTimeout(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u@127.0.0.1:5432/db?sslmode=disable",
		"host=127.0.0.1 port=5432 user=u dbname=db sslmode=disable",
	} {
		cfg, err := pgx.ParseConfig(WithConnectTimeout(dsn, 10*time.Second))
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if cfg.ConnectTimeout != 10*time.Second || cfg.Database != "db" {
			t.Errorf("%s: connect timeout %v, database %q; want 10s, db", dsn, cfg.ConnectTimeout, cfg.Database)
		}
	}
}
