package db

import (
	"database/sql/driver"
	"errors"
	"path/filepath"
	"testing"
)

// Raw compiles a statement once per connection: again on the connection
// database/sql opens after the one before was reported bad, and again
// after Close. Each runs, in a transaction of Raw's.
func TestRawStatementsPerConnection(t *testing.T) {
	ctx := ctxT(t)
	d, err := Open(ctx, filepath.Join(t.TempDir(), "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.SQL.ExecContext(ctx, "CREATE TABLE t (x INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	s := NewStmts(d.SQL)
	const q = "INSERT INTO t (x) VALUES (?)"
	insert := func(x int64, fail error) (driver.StmtExecContext, error) {
		var st driver.StmtExecContext
		err := s.Raw(ctx, func(c *RawConn) error {
			var err error
			if st, err = c.Prepare(ctx, q); err != nil {
				return err
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := st.ExecContext(ctx, []driver.NamedValue{{Ordinal: 1, Value: x}}); err != nil {
				_ = tx.Rollback()
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			return fail
		})
		return st, err
	}
	a, err := insert(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := insert(2, nil); err != nil || b != a {
		t.Errorf("on the same connection: statement %p, %v; want the first, %p", b, err, a)
	}
	if _, err := insert(3, driver.ErrBadConn); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("a bad connection: %v", err)
	}
	c, err := insert(4, nil)
	if err != nil || c == a {
		t.Errorf("on a new connection: statement %p, %v; want a new one", c, err)
	}
	s.Close()
	if e, err := insert(5, nil); err != nil || e == c {
		t.Errorf("after Close: statement %p, %v; want a new one", e, err)
	}
	var sum int64
	if err := d.SQL.QueryRowContext(ctx, "SELECT sum(x) FROM t").Scan(&sum); err != nil || sum != 15 {
		t.Errorf("sum of the rows %d, %v; want 15 (1 to 5)", sum, err)
	}
	s.Close()
}
