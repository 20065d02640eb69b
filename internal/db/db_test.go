package db

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestKindOf(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u@h/db":             Postgres,
		"postgresql://u:p@h:5432/db":    Postgres,
		"Postgres://u:p@h/db":           Postgres,
		"POSTGRESQL://u:p@h/db":         Postgres,
		"host=/run/postgresql dbname=x": Postgres,
		"dbname=mx user=mx":             Postgres,
		"HOST=db dbname=mx":             Postgres,
		"/var/lib/mxpolicyd/mx.db":      SQLite,
		"mx.db":                         SQLite,
		"file:mx.db":                    SQLite,
		"file:///var/lib/mx.db":         SQLite,
		"a=b.db":                        SQLite,
	} {
		got, err := KindOf(dsn)
		if err != nil || got != want {
			t.Errorf("KindOf(%q) = %q, %v; want %q", dsn, got, err, want)
		}
		if IsPostgresDSN(dsn) != (want == Postgres) {
			t.Errorf("IsPostgresDSN(%q) disagrees with KindOf", dsn)
		}
	}
}

// A foreign or misspelt scheme is refused, naming the scheme and never the
// password, and nothing is created on disk.
func TestKindOfRefusesOtherSchemes(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"mysql://mx:s3cret@db/mx", "postgress://mx:s3cret@db/mx", "sqlite://mx.db", "pg://mx:s3cret@db",
		" Redis://:s3cret@cache:6379",
	} {
		_, err := KindOf(dsn)
		if err == nil || !strings.Contains(err.Error(), "unsupported database scheme") {
			t.Errorf("KindOf(%q) = %v, want an unsupported-scheme error", dsn, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("KindOf(%q) error leaks the password: %v", dsn, err)
		}
		if _, err := Open(ctxT(t), dsn, nil); err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("refused DSNs created %v", ents)
	}
}

func TestOpenSQLite(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "sub", "mx.db")
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Kind() != SQLite || d.SQL == nil || d.PG != nil {
		t.Fatalf("kind %q SQL %v PG %v", d.Kind(), d.SQL, d.PG)
	}
	var mode string
	if err := d.SQL.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// Many goroutines writing at once must all succeed: a single connection
// with BEGIN IMMEDIATE queues them instead of failing with SQLITE_BUSY.
func TestSQLiteConcurrentWritesNeverBusy(t *testing.T) {
	ctx := ctxT(t)
	d, err := Open(ctx, filepath.Join(t.TempDir(), "mx.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.SQL.ExecContext(ctx, `CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const workers, each = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tx, err := d.SQL.BeginTx(ctx, nil)
				if err != nil {
					errs <- err
					return
				}
				_, err = tx.ExecContext(ctx, `INSERT INTO c VALUES ('k', 1) ON CONFLICT (k) DO UPDATE SET n = n + 1`)
				if err == nil {
					err = tx.Commit()
				} else {
					_ = tx.Rollback()
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write failed: %v", err)
	}
	var n int
	if err := d.SQL.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil || n != workers*each {
		t.Fatalf("n = %d, %v; want %d", n, err, workers*each)
	}
}

func TestOpenPostgres(t *testing.T) {
	ctx := ctxT(t)
	d, err := Open(ctx, pgtest.New(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Kind() != Postgres || d.PG == nil || d.SQL != nil {
		t.Fatalf("kind %q", d.Kind())
	}
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = d.PG.Exec(ctx, "SELECT nonsense FROM nowhere")
	if err == nil || IsTemporary(err) {
		t.Fatalf("a SQL error must be permanent, got %v (temporary=%v)", err, IsTemporary(err))
	}
}

// A server that is not there is a temporary failure, and the error names
// the server without its password.
func TestOpenPostgresRefusedIsTemporary(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://mx:s3cret@127.0.0.1:%d/mx?connect_timeout=2", port)
	_, err = Open(ctxT(t), dsn, nil)
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if !IsTemporary(err) {
		t.Errorf("connection refused must be temporary: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestIsTemporaryContext(t *testing.T) {
	if !IsTemporary(fmt.Errorf("x: %w", context.DeadlineExceeded)) {
		t.Error("deadline exceeded must be temporary")
	}
	if IsTemporary(fmt.Errorf("plain")) || IsTemporary(nil) {
		t.Error("plain errors and nil are not temporary")
	}
}

// A SQLite path is a file name, whatever it holds: SQLite reads the name
// as a URI, where '?' and '#' would end the path and "%XX" be decoded.
func TestSQLitePathWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"mx#1.db", "mx?2.db", "mx%41.db"} {
		path := filepath.Join(dir, name)
		d, err := Open(ctxT(t), path, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := d.Ping(ctxT(t)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Open(%q) did not create that file: %v", name, err)
		}
	}
}
