// Package pgtest gives tests a real PostgreSQL database: a fresh, empty
// database per call, on the server named by TEST_DATABASE_URL or else on one
// throwaway cluster that this package starts with initdb/pg_ctl for the
// whole test binary. It fails, never skips, when it cannot have one: a
// store test that quietly did not run proves nothing. Tests that break the
// server on purpose start their own with StartServer.
//
// Use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		dsn := pgtest.New(t) // postgres://... of an empty database, dropped after the test
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the server to use instead of starting a cluster. Its role
// must be allowed to CREATE DATABASE.
const EnvURL = "TEST_DATABASE_URL"

var (
	mainCalled atomic.Bool
	once       sync.Once
	shared     *cluster
	sharedErr  error
	seq        atomic.Int64
)

// Main runs the tests, then stops the cluster if one was started, so no
// postgres process outlives the test binary. Call it from TestMain.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	os.Exit(code)
}

// New creates a uniquely named empty database and returns its DSN. The
// database is dropped when the test ends. It fails the test (never skips)
// when no server can be had.
func New(t testing.TB) string {
	t.Helper()
	base := serverURL(t)
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sql := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
		if err := adminExec(ctx, base, sql); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return withDB(base, name)
}

// serverURL is the admin DSN of the server the tests use.
func serverURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if !mainCalled.Load() {
		t.Fatalf("pgtest: %s is not set and the package has no TestMain calling pgtest.Main(m), "+
			"which is needed to stop the throwaway cluster", EnvURL)
	}
	once.Do(func() { shared, sharedErr = startCluster() })
	if sharedErr != nil {
		t.Fatalf("pgtest: cannot start a throwaway PostgreSQL cluster (set %s to use an existing server): %v",
			EnvURL, sharedErr)
	}
	return shared.dsn
}

func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// dbName makes a valid, unique, recognisable database name from the test
// name: PostgreSQL truncates identifiers at 63 bytes.
func dbName(test string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	tail := fmt.Sprintf("_%d_%d_%s", os.Getpid(), seq.Add(1), hex.EncodeToString(r[:]))
	s := unsafeChars.ReplaceAllString(strings.ToLower(test), "_")
	if max := 63 - len(tail) - 2; len(s) > max {
		s = s[:max]
	}
	return "t_" + s + tail
}

// withDB points dsn at database name, in URL or key=value form.
func withDB(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // the last occurrence of a key wins
}

// WithConnectTimeout sets dsn's connect_timeout (libpq "Parameter Key
// Words": whole seconds), in URL or key=value form. Tests of what a store
// decides use it: on two cores busy with `go test -race`, forking a
// backend can outlast the daemon's one-second default, and such a test is
// about verdicts, not connect time. Fault tests keep the default.
func WithConnectTimeout(dsn string, d time.Duration) string {
	secs := strconv.Itoa(int(d / time.Second))
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("connect_timeout", secs)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " connect_timeout=" + secs
}
