package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// Two calls give two distinct, empty, writable databases.
func TestNewGivesFreshDatabases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := New(t), New(t)
	if a == b {
		t.Fatalf("New returned the same DSN twice: %s", a)
	}
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n)
		if err != nil || n != 0 {
			t.Fatalf("fresh database %s: %d tables, err %v", dsn, n, err)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE x (i int)`); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
}

func TestDBName(t *testing.T) {
	n := dbName("TestVery/Long Name-" + strings.Repeat("x", 100))
	if len(n) > 63 || !strings.HasPrefix(n, "t_testvery_long_name_") {
		t.Fatalf("dbName = %q (%d bytes)", n, len(n))
	}
	if a, b := dbName("A"), dbName("A"); a == b {
		t.Fatal("dbName is not unique")
	}
}

func TestWithDB(t *testing.T) {
	got := withDB("postgres://u:p@h:5/postgres?sslmode=disable", "d1")
	if got != "postgres://u:p@h:5/d1?sslmode=disable" {
		t.Fatalf("URL form: %s", got)
	}
	if got := withDB("host=/tmp dbname=postgres", "d2"); got != "host=/tmp dbname=postgres dbname=d2" {
		t.Fatalf("key=value form: %s", got)
	}
}
