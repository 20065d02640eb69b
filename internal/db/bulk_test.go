package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openBulkTest opens a SQLite store with a table t for Bulk's tests.
func openBulkTest(t *testing.T) (*DB, string) {
	t.Helper()
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "b.db")
	d, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if _, err := d.SQL.ExecContext(ctx, "CREATE TABLE t (n INTEGER, s TEXT)"); err != nil {
		t.Fatal(err)
	}
	return d, path
}

// bulkInsert inserts the pairs (n, s) in one transaction of one statement
// per pair.
func bulkInsert(ctx context.Context, b *Bulk, ns []int64, ss []string) error {
	st, tx, err := prepareAndBegin(ctx, b, "INSERT INTO t (n, s) VALUES (?, ?)")
	if err != nil {
		return err
	}
	for i := range ns {
		st.Int(1, ns[i])
		st.TextOrNull(2, ss[i])
		if err := tx.Exec(st); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// queryInt is the one integer q selects through the store's own
// connection, read after a Bulk call to see what it committed.
func queryInt(ctx context.Context, t *testing.T, d *DB, q string) int64 {
	t.Helper()
	var n int64
	if err := d.SQL.QueryRowContext(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// prepareAndBegin prepares q on b and begins a transaction.
func prepareAndBegin(ctx context.Context, b *Bulk, q string) (*BulkStmt, *BulkTx, error) {
	st, err := b.Prepare(q)
	if err != nil {
		return nil, nil, err
	}
	tx, err := b.Begin(ctx)
	return st, tx, err
}

// What Bulk binds is what the table holds: integers, texts (past one
// chunk of its C memory, and one longer than a chunk), and NULL for the
// empty text bound with TextOrNull. The statement is compiled once per handle.
func TestBulkRoundTrip(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	long := strings.Repeat("x", bulkChunk+1)
	var ns []int64
	var ss []string
	for i := range 3000 { // 3000 texts of 40 bytes: two chunks' worth
		ns = append(ns, int64(i))
		ss = append(ss, strings.Repeat(string(rune('a'+i%26)), 40))
	}
	ns = append(ns, -1<<63, 1<<63-1, 7)
	ss = append(ss, long, "", "é\x00z")
	var first *BulkStmt
	err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		first, _ = b.Prepare("INSERT INTO t (n, s) VALUES (?, ?)")
		return bulkInsert(ctx, b, ns, ss)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Stmts().Bulk(ctx, func(b *Bulk) error {
		if st, _ := b.Prepare("INSERT INTO t (n, s) VALUES (?, ?)"); st != first {
			t.Error("the statement was compiled again on the same handle")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.SQL.QueryContext(ctx, "SELECT n, s FROM t ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var n int64
		var s sql.NullString
		if err := rows.Scan(&n, &s); err != nil {
			t.Fatal(err)
		}
		want := sql.NullString{String: ss[i], Valid: ss[i] != ""}
		if n != ns[i] || s != want {
			t.Fatalf("row %d: (%d, %.20q %v); want (%d, %.20q %v)", i, n, s.String, s.Valid, ns[i], want.String, want.Valid)
		}
	}
	if err := rows.Err(); err != nil || i != len(ns) {
		t.Fatalf("%d rows, %v; want %d", i, err, len(ns))
	}
}

// A failed bind (a parameter the statement has not got) fails the Exec
// without stepping, and the statement works again afterwards.
func TestBulkBindError(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		st, tx, err := prepareAndBegin(ctx, b, "INSERT INTO t (n) VALUES (?)")
		if err != nil {
			return err
		}
		st.Int(1, 1)
		st.Int(2, 2)
		var be *BulkError
		if err := tx.Exec(st); !errors.As(err, &be) || be.Code()&0xff != 25 { // SQLITE_RANGE
			t.Errorf("binding parameter 2 of 1: %v; want SQLITE_RANGE", err)
		}
		st.Int(1, 3)
		if err := tx.Exec(st); err != nil {
			t.Errorf("after the failed bind: %v", err)
		}
		return tx.Commit()
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum := queryInt(ctx, t, d, "SELECT sum(n) FROM t"); sum != 3 {
		t.Errorf("sum %d; want 3 (only the second row)", sum)
	}
}

// Bulk holds the store's one connection: while a transaction of the
// store's own holds it, Bulk waits, and gives up with the context.
func TestBulkWaitsForTheStoreConnection(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	tx, err := d.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	ran := false
	err = d.Stmts().Bulk(short, func(*Bulk) error { ran = true; return nil })
	if ran || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with the connection in a transaction: ran %v, err %v; want no run, the deadline", ran, err)
	}
}

// Another process holding the file's write lock (here another
// connection, as an admin command's would) makes Begin wait until the
// context's deadline, not the 5 s busy timeout, and fail as busy.
func TestBulkBeginWaitsForTheLockUntilTheDeadline(t *testing.T) {
	ctx := ctxT(t)
	d, path := openBulkTest(t)
	other, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otx, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer otx.Rollback()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = d.Stmts().Bulk(short, func(b *Bulk) error {
		return bulkInsert(short, b, []int64{1}, []string{"a"})
	})
	if !IsSQLiteBusy(err) || !IsTemporary(err) {
		t.Errorf("begin while another holds the lock: %v; want SQLITE_BUSY", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the test's own context ended")
	}
	_ = otx.Rollback()
	if err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		return bulkInsert(ctx, b, []int64{2}, []string{"b"})
	}); err != nil {
		t.Errorf("once the lock is free: %v", err)
	}
}

// A statement running when its context ends is interrupted: it fails,
// the transaction is gone, and the handle works for the next one.
func TestBulkInterruptsWithTheContext(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := d.Stmts().Bulk(short, func(b *Bulk) error {
		// Never ends on its own.
		st, tx, err := prepareAndBegin(short, b, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) INSERT INTO t (n) SELECT x FROM c")
		if err != nil {
			return err
		}
		if err := tx.Exec(st); err != nil {
			return errors.Join(err, tx.Rollback())
		}
		return tx.Commit()
	})
	var be *BulkError
	if !errors.As(err, &be) || be.Code() != 9 { // SQLITE_INTERRUPT
		t.Fatalf("a statement past its deadline: %v; want SQLITE_INTERRUPT", err)
	}
	if err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		return bulkInsert(ctx, b, []int64{1}, []string{"a"})
	}); err != nil {
		t.Fatalf("after the interrupt: %v", err)
	}
	if n := queryInt(ctx, t, d, "SELECT count(*) FROM t"); n != 1 {
		t.Errorf("%d rows; want 1: the interrupted statement's rolled back", n)
	}
}

// A panic in f closes the handle; the next call opens another, which
// is not left in the panicking call's transaction.
func TestBulkPanicClosesTheHandle(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	var first *Bulk
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		_ = d.Stmts().Bulk(ctx, func(b *Bulk) error {
			first = b
			if _, err := b.Begin(ctx); err != nil {
				return err
			}
			panic("in f")
		})
	}()
	err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		if b == first {
			t.Error("the handle of the panicking call was used again")
		}
		return bulkInsert(ctx, b, []int64{1}, []string{"a"})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A store without its file's path (NewStmts) or opened read-only has no
// Bulk handle.
func TestBulkNeedsAWritableFile(t *testing.T) {
	ctx := ctxT(t)
	d, path := openBulkTest(t)
	f := func(*Bulk) error { return nil }
	if err := NewStmts(d.SQL).Bulk(ctx, f); !errors.Is(err, ErrNoBulk) {
		t.Errorf("NewStmts: %v; want ErrNoBulk", err)
	}
	ro, err := OpenReadOnly(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Stmts().Bulk(ctx, f); !errors.Is(err, ErrNoBulk) {
		t.Errorf("read-only: %v; want ErrNoBulk", err)
	}
}

// A transaction f leaves open is rolled back when Bulk returns: its row
// is not stored, and the next call begins a transaction of its own.
func TestBulkRollsBackWhatFLeftOpen(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		st, tx, err := prepareAndBegin(ctx, b, "INSERT INTO t (n) VALUES (?)")
		if err != nil {
			return err
		}
		st.Int(1, 1)
		return tx.Exec(st) // and no Commit
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		return bulkInsert(ctx, b, []int64{2}, []string{"b"})
	}); err != nil {
		t.Fatalf("after a transaction left open: %v", err)
	}
	if sum := queryInt(ctx, t, d, "SELECT sum(n) FROM t"); sum != 2 {
		t.Errorf("sum %d; want 2: only the committed row", sum)
	}
}

// Text binds the empty string as an empty text, not NULL, even as the
// first text of a handle; Changes counts the rows a statement changed;
// Ints reads a returned row's integers and NULLs, and says when there is
// no row.
func TestBulkTextChangesInts(t *testing.T) {
	ctx := ctxT(t)
	d, _ := openBulkTest(t)
	var changed []int64
	var got [3]sql.NullInt64
	var none error
	err := d.Stmts().Bulk(ctx, func(b *Bulk) error {
		ins, tx, err := prepareAndBegin(ctx, b, "INSERT INTO t (n, s) VALUES (?, ?)")
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i, s := range []string{"", "a", ""} {
			ins.Int(1, int64(i))
			ins.Text(2, s)
			if err := tx.Exec(ins); err != nil {
				return err
			}
		}
		upd, err := b.Prepare("UPDATE t SET n = n + 10 WHERE s = ?")
		if err != nil {
			return err
		}
		for _, s := range []string{"", "a", "b"} {
			upd.Text(1, s)
			n, err := tx.Changes(upd)
			if err != nil {
				return err
			}
			changed = append(changed, n)
		}
		ret, err := b.Prepare("UPDATE t SET n = n + 1 WHERE s = ? RETURNING n, NULL, length(s)")
		if err != nil {
			return err
		}
		ret.Text(1, "a")
		if err := tx.Ints(ret, &got[0], &got[1], &got[2]); err != nil {
			return err
		}
		ret.Text(1, "b")
		none = tx.Ints(ret, &got[0])
		return tx.Commit()
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(changed) != "[2 1 0]" {
		t.Errorf("rows changed by s = '', 'a', 'b': %v; want [2 1 0]", changed)
	}
	want := [3]sql.NullInt64{{Int64: 12, Valid: true}, {}, {Int64: 1, Valid: true}}
	if got != want {
		t.Errorf("RETURNING n, NULL, length(s): %v; want %v", got, want)
	}
	if !errors.Is(none, sql.ErrNoRows) {
		t.Errorf("no row returned: %v; want %v", none, sql.ErrNoRows)
	}
	if n := queryInt(ctx, t, d, "SELECT count(*) FROM t WHERE s = ''"); n != 2 {
		t.Errorf("%d rows with the empty text; want 2", n)
	}
}
