package db

import (
	"context"
	"database/sql"
	"sync"
)

// Stmts keeps statements prepared on one SQLite database, by their text.
// modernc.org/sqlite compiles a statement passed as text on every call
// (sqlite3_prepare_v2, https://www.sqlite.org/c3ref/prepare.html); a
// prepared one is only bound, stepped and reset. For the greylist upsert,
// compiling cost more CPU than running it. database/sql keeps each
// statement prepared on the connection and prepares it again on a new one.
type Stmts struct {
	db   *sql.DB
	mu   sync.Mutex
	set  map[string]*sql.Stmt
	bulk bulkHandle // the file's second handle (bulk.go)
}

// NewStmts returns an empty set of statements on d.
func NewStmts(d *sql.DB) *Stmts { return &Stmts{db: d} }

// newFileStmts is NewStmts for the store's file at path, on which Bulk
// opens its handle.
func newFileStmts(d *sql.DB, path string) *Stmts {
	return &Stmts{db: d, bulk: bulkHandle{path: path}}
}

// Prepare returns q's statement, compiled on its first use; a failure is
// not kept, so the next call tries again. Call it before a transaction
// begins: on SQLite the one connection is the transaction's until it
// ends, so a prepare on the database would wait for it. Inside the
// transaction, Tx.StmtContext runs the statement on the connection
// without compiling it again.
func (s *Stmts) Prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.set[q]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if s.set == nil {
		s.set = make(map[string]*sql.Stmt)
	}
	s.set[q] = st
	return st, nil
}

// Close releases the statements and closes the Bulk handle; a later
// Prepare compiles them again.
func (s *Stmts) Close() {
	s.closeBulk()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.set {
		_ = st.Close()
	}
	s.set = nil
}
