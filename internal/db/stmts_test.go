package db

import (
	"path/filepath"
	"testing"
)

// A statement is compiled once and reused; a failed prepare is not kept,
// and Close lets the next Prepare compile again.
func TestStmts(t *testing.T) {
	ctx := ctxT(t)
	d, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := NewStmts(d.SQL)
	const q = "SELECT count(*) FROM t"
	if _, err := s.Prepare(ctx, q); err == nil {
		t.Fatal("prepared a statement on a missing table")
	}
	if _, err := d.SQL.ExecContext(ctx, "CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	a, err := s.Prepare(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := s.Prepare(ctx, q); err != nil || b != a {
		t.Errorf("second Prepare = %p, %v; want the first statement %p", b, err, a)
	}
	s.Close()
	c, err := s.Prepare(ctx, q)
	if err != nil || c == a {
		t.Fatalf("Prepare after Close = %p, %v; want a new statement", c, err)
	}
	var n int
	if err := c.QueryRowContext(ctx).Scan(&n); err != nil || n != 0 {
		t.Errorf("count = %d, %v", n, err)
	}
}
