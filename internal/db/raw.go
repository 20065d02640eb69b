package db

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"
)

// RawConn is the SQLite store's one connection as the driver's own, for a
// statement that binds many values: database/sql converts the arguments
// of every call into a new []driver.NamedValue, 40 bytes and a
// conversion per value (driverArgsConnLocked, database/sql/convert.go),
// where a caller of the driver builds the values itself, in a slice it
// reuses. The decision log's 64-row INSERT binds 1,216 values a
// statement (decisionlog/insert.go).
//
// A RawConn is used only inside Stmts.Raw, which holds the connection for
// it alone. Its statements are compiled once per connection and finalized
// by Stmts.Close.
type RawConn struct {
	dc    any // the driver's connection
	stmts map[string]rawStmt
}

// rawStmt is a driver's statement that executes with a context, as
// modernc.org/sqlite's do.
type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
}

// Raw runs f on the store's connection (database/sql's Conn.Raw), waiting
// for it as any other use does. f must end any transaction it begins. An
// error of f matching driver.ErrBadConn, or a panic, makes database/sql
// discard the connection; the next Raw then compiles its statements
// again on the new one.
func (s *Stmts) Raw(ctx context.Context, f func(*RawConn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return f(s.rawConn(dc)) })
}

// rawConn returns dc's RawConn. A new connection (database/sql closed the
// one before) starts with no statements: those of the closed one are
// dropped, not finalized, as finalizing needs their connection open.
func (s *Stmts) rawConn(dc any) *RawConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == nil || s.raw.dc != dc {
		s.raw = &RawConn{dc: dc}
	}
	return s.raw
}

// Prepare returns q's statement, compiled on its first use on this
// connection; a failure is not kept.
func (c *RawConn) Prepare(ctx context.Context, q string) (driver.StmtExecContext, error) {
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	pc, ok := c.dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("db: the SQLite driver's connection (%T) cannot prepare with a context", c.dc)
	}
	st, err := pc.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	se, ok := st.(rawStmt)
	if !ok {
		_ = st.Close()
		return nil, fmt.Errorf("db: the SQLite driver's statement (%T) cannot execute with a context", st)
	}
	if c.stmts == nil {
		c.stmts = make(map[string]rawStmt)
	}
	c.stmts[q] = se
	return se, nil
}

// Begin begins a transaction, as the DSN's _txlock says (BEGIN
// IMMEDIATE: sqliteDSN). The driver ends it early, rolled back, when ctx
// is done (modernc.org/sqlite, tx.go).
func (c *RawConn) Begin(ctx context.Context) (driver.Tx, error) {
	bt, ok := c.dc.(driver.ConnBeginTx)
	if !ok {
		return nil, fmt.Errorf("db: the SQLite driver's connection (%T) cannot begin with a context", c.dc)
	}
	return bt.BeginTx(ctx, driver.TxOptions{})
}

// rawCloseWait bounds how long Close waits for the connection to finalize
// the raw statements; past it they are left to the connection's close.
const rawCloseWait = time.Second

// closeRaw finalizes the statements of the current connection's RawConn
// on that connection.
func (s *Stmts) closeRaw() {
	s.mu.Lock()
	raw := s.raw
	s.raw = nil
	s.mu.Unlock()
	if raw == nil || len(raw.stmts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), rawCloseWait)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.Raw(func(dc any) error {
		if dc != raw.dc {
			return nil // a later connection: raw's is closed
		}
		for _, st := range raw.stmts {
			_ = st.Close()
		}
		return nil
	})
}
