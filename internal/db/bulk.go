package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Bulk is a second handle on the SQLite store's file, for a statement
// that binds many values many times a second: the decision log's
// multi-row INSERT (decisionlog/insert.go).
//
// Through modernc.org/sqlite's driver each value costs a C string
// allocated, copied and freed, a name lookup and, since the driver opens
// every connection with SQLITE_OPEN_FULLMUTEX (conn.go, newConn), the
// connection's mutex taken and released for every bind and again for
// every unbind after the step (stmt.go, clearBindings). Bulk calls the
// same SQLite library (modernc.org/sqlite/lib) on a handle opened with
// SQLITE_OPEN_NOMUTEX, the "multi-thread" mode
// (https://www.sqlite.org/threadsafe.html): no mutex on the handle or its
// statements, which is safe because only one goroutine uses it at a time
// (Stmts.Bulk holds the store's one connection meanwhile). A statement's
// texts are copied into chunks of C memory Bulk keeps, and bound with
// SQLITE_STATIC (https://www.sqlite.org/c3ref/bind_blob.html): SQLite
// reads them in place until the statement is reset. On the decision
// log's rows this writes about twice as many a second
// (docs/PERFORMANCE.md, "The decision log's own SQLite handle").
//
// Its settings are the driver connection's (sqliteDSN): WAL is the
// file's, synchronous=NORMAL and the automatic checkpoint are set per
// handle; a transaction is BEGIN IMMEDIATE. The busy timeout and an
// interrupt end a transaction's waits with its context (BulkTx).
type Bulk struct {
	tls   *libc.TLS // the handle's: used only by the goroutine in Stmts.Bulk
	itls  *libc.TLS // the interrupt's, from context.AfterFunc's goroutine
	h     uintptr   // *sqlite3
	stmts map[string]*BulkStmt
	texts textChunks

	// imu keeps an interrupt (from context.AfterFunc's goroutine) off a
	// closed handle: close takes it to clear h.
	imu sync.Mutex
	tx  *BulkTx // the transaction begun and not ended, if any
}

// cmem is the address p of C memory (modernc.org/libc's allocator or a
// TLS's stack: outside Go's heap, never moved) as a Go pointer.
func cmem(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// bulkChunk is the size of one chunk of C memory for a statement's texts;
// a 64-row INSERT of decisions fills about an eighth of one.
const bulkChunk = 64 << 10

// textChunks is C memory that holds one statement's texts until it is
// reset: chunks of bulkChunk bytes, kept from one statement to the next,
// and a text longer than a chunk in an allocation of its own, freed after
// the statement.
type textChunks struct {
	chunks []uintptr
	cur    int // index in chunks of the chunk being filled
	used   int // bytes used of chunks[cur]
	big    []uintptr
}

// put copies s into t's C memory and returns its address, or 0 when memory
// ran out. It only reads s: a string's bytes may be given as the slice
// (BulkStmt.Text).
func (t *textChunks) put(tls *libc.TLS, s []byte) uintptr {
	if len(s) > bulkChunk {
		p := libc.Xmalloc(tls, libc.Tsize_t(len(s)))
		if p != 0 {
			copy(unsafe.Slice((*byte)(cmem(p)), len(s)), s)
			t.big = append(t.big, p)
		}
		return p
	}
	if len(t.chunks) == 0 || t.used+len(s) > bulkChunk {
		next := t.cur + 1
		if len(t.chunks) == 0 {
			next = 0
		}
		if next == len(t.chunks) {
			p := libc.Xmalloc(tls, bulkChunk)
			if p == 0 {
				return 0 // cur and used stay valid for the next call
			}
			t.chunks = append(t.chunks, p)
		}
		t.cur, t.used = next, 0
	}
	p := t.chunks[t.cur] + uintptr(t.used)
	copy(unsafe.Slice((*byte)(cmem(p)), len(s)), s)
	t.used += len(s)
	return p
}

// reset makes the memory free for the next statement's texts.
func (t *textChunks) reset(tls *libc.TLS) {
	for _, p := range t.big {
		libc.Xfree(tls, p)
	}
	t.big = t.big[:0]
	t.cur, t.used = 0, 0
}

func (t *textChunks) free(tls *libc.TLS) {
	t.reset(tls)
	for _, p := range t.chunks {
		libc.Xfree(tls, p)
	}
	t.chunks = nil
}

// BulkError is a failure SQLite reported on a Bulk handle: its extended
// result code (https://www.sqlite.org/rescode.html) and message.
type BulkError struct {
	code int
	msg  string
}

func (e *BulkError) Error() string { return fmt.Sprintf("sqlite: %s (%d)", e.msg, e.code) }

// Code is the extended result code, as modernc.org/sqlite's Error.Code.
func (e *BulkError) Code() int { return e.code }

func (b *Bulk) err(rc int32) error {
	msg := "unknown error"
	if p := sqlite3.Xsqlite3_errmsg(b.tls, b.h); p != 0 {
		msg = libc.GoString(p)
	}
	if code := sqlite3.Xsqlite3_extended_errcode(b.tls, b.h); code != 0 {
		rc = code
	}
	return &BulkError{code: int(rc), msg: msg}
}

// openBulk opens path's Bulk handle. The file exists: the store's own
// connection opened it first (openSQLite).
func openBulk(path string) (_ *Bulk, err error) {
	b := &Bulk{tls: libc.NewTLS(), itls: libc.NewTLS()}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	name, err := libc.CString("file:" + uriPath.Replace(path))
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(b.tls, name)
	pp := b.tls.Alloc(int(unsafe.Sizeof(uintptr(0))))
	defer b.tls.Free(int(unsafe.Sizeof(uintptr(0))))
	rc := sqlite3.Xsqlite3_open_v2(b.tls, name, pp,
		sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_NOMUTEX|sqlite3.SQLITE_OPEN_URI, 0)
	b.h = *(*uintptr)(cmem(pp))
	if rc != sqlite3.SQLITE_OK {
		if b.h == 0 {
			return nil, &BulkError{code: int(rc), msg: "cannot open"}
		}
		return nil, b.err(rc)
	}
	sqlite3.Xsqlite3_extended_result_codes(b.tls, b.h, 1)
	if err := b.exec(fmt.Sprintf("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = %d", walAutoCheckpoint)); err != nil {
		return nil, err
	}
	return b, nil
}

// exec runs q, statements without results.
func (b *Bulk) exec(q string) error {
	p, err := libc.CString(q)
	if err != nil {
		return err
	}
	defer libc.Xfree(b.tls, p)
	if rc := sqlite3.Xsqlite3_exec(b.tls, b.h, p, 0, 0, 0); rc != sqlite3.SQLITE_OK {
		return b.err(rc)
	}
	return nil
}

func (b *Bulk) close() {
	if b.tx != nil {
		b.tx.end() // a panic ended its transaction's call
	}
	for _, st := range b.stmts {
		sqlite3.Xsqlite3_finalize(b.tls, st.p)
	}
	b.stmts = nil
	b.texts.free(b.tls)
	b.imu.Lock()
	h := b.h
	b.h = 0
	b.imu.Unlock()
	if h != 0 {
		sqlite3.Xsqlite3_close_v2(b.tls, h)
	}
	b.tls.Close()
	b.itls.Close()
}

// BulkStmt is a statement prepared on a Bulk handle. Bind every
// parameter, then run it with BulkTx.Exec, which returns a bind's failure.
type BulkStmt struct {
	b   *Bulk
	p   uintptr // *sqlite3_stmt
	err error   // the first failed bind since the last Exec
}

// Prepare returns q's statement, compiled on its first use on this
// handle; a failure is not kept.
func (b *Bulk) Prepare(q string) (*BulkStmt, error) {
	if st, ok := b.stmts[q]; ok {
		return st, nil
	}
	zq, err := libc.CString(q)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(b.tls, zq)
	pp := b.tls.Alloc(int(unsafe.Sizeof(uintptr(0))))
	defer b.tls.Free(int(unsafe.Sizeof(uintptr(0))))
	if rc := sqlite3.Xsqlite3_prepare_v2(b.tls, b.h, zq, -1, pp, 0); rc != sqlite3.SQLITE_OK {
		return nil, b.err(rc)
	}
	st := &BulkStmt{b: b, p: *(*uintptr)(cmem(pp))}
	if b.stmts == nil {
		b.stmts = make(map[string]*BulkStmt)
	}
	b.stmts[q] = st
	return st, nil
}

func (s *BulkStmt) check(rc int32) {
	if rc != sqlite3.SQLITE_OK && s.err == nil {
		s.err = s.b.err(rc)
	}
}

// Text binds v to the parameter i (from 1), the empty string included.
func (s *BulkStmt) Text(i int, v string) { s.TextBytes(i, unsafe.Slice(unsafe.StringData(v), len(v))) }

// TextBytes is Text of v's bytes, which it copies: for a text appended
// to a buffer, which need not become a string.
func (s *BulkStmt) TextBytes(i int, v []byte) {
	// put returns memory of the current chunk even for the empty string:
	// SQLite binds NULL for a text at address 0
	// (https://www.sqlite.org/c3ref/bind_blob.html).
	p := s.b.texts.put(s.b.tls, v)
	if p == 0 {
		if s.err == nil {
			s.err = &BulkError{code: sqlite3.SQLITE_NOMEM, msg: "out of memory"}
		}
		return
	}
	s.check(sqlite3.Xsqlite3_bind_text(s.b.tls, s.p, int32(i), p, int32(len(v)), sqlite3.SQLITE_STATIC))
}

// TextOrNull is Text, except that the empty string binds NULL: the
// decision log's statements store a NULL text as the empty string, and a
// NULL is bound without copying anything.
func (s *BulkStmt) TextOrNull(i int, v string) {
	if v == "" {
		s.Null(i)
		return
	}
	s.Text(i, v)
}

// Int binds v to the parameter i.
func (s *BulkStmt) Int(i int, v int64) {
	s.check(sqlite3.Xsqlite3_bind_int64(s.b.tls, s.p, int32(i), v))
}

// Null binds NULL to the parameter i.
func (s *BulkStmt) Null(i int) {
	s.check(sqlite3.Xsqlite3_bind_null(s.b.tls, s.p, int32(i)))
}

// Exec steps st to its end in the transaction and resets it; its texts'
// memory is free again afterwards. The values stay bound, but point
// nowhere safe: bind them all again before the next Exec. Once the
// transaction's context is done, the error says so.
func (tx *BulkTx) Exec(st *BulkStmt) error { return ctxErr(tx.ctx, st.run(nil)) }

// Changes is Exec, and returns how many rows the statement inserted,
// updated or deleted (https://www.sqlite.org/c3ref/changes.html).
func (tx *BulkTx) Changes(st *BulkStmt) (int64, error) {
	if err := tx.Exec(st); err != nil {
		return 0, err
	}
	return sqlite3.Xsqlite3_changes64(st.b.tls, st.b.h), nil
}

// Ints is Exec for a statement that returns one row of integers (or
// NULLs, as !Valid): its first row's columns, one for each of dst. A
// statement that returns no row is sql.ErrNoRows, as database/sql's
// Row.Scan.
func (tx *BulkTx) Ints(st *BulkStmt, dst ...*sql.NullInt64) error {
	found := false
	err := st.run(func() {
		found = true
		for i, d := range dst {
			d.Valid = sqlite3.Xsqlite3_column_type(st.b.tls, st.p, int32(i)) != sqlite3.SQLITE_NULL
			d.Int64 = sqlite3.Xsqlite3_column_int64(st.b.tls, st.p, int32(i))
		}
	})
	if err == nil && !found {
		err = sql.ErrNoRows
	}
	return ctxErr(tx.ctx, err)
}

// run steps s to its end, calls row at its first row, if any, and resets
// it.
func (s *BulkStmt) run(row func()) error {
	defer s.b.texts.reset(s.b.tls)
	if err := s.err; err != nil {
		s.err = nil
		sqlite3.Xsqlite3_reset(s.b.tls, s.p)
		return err
	}
	rc := sqlite3.Xsqlite3_step(s.b.tls, s.p)
	for rc == sqlite3.SQLITE_ROW {
		if row != nil {
			row()
			row = nil
		}
		rc = sqlite3.Xsqlite3_step(s.b.tls, s.p)
	}
	var err error
	if rc != sqlite3.SQLITE_DONE {
		err = s.b.err(rc)
	}
	sqlite3.Xsqlite3_reset(s.b.tls, s.p)
	return err
}

// BulkTx is a transaction on a Bulk handle, from Begin to Commit or
// Rollback.
type BulkTx struct {
	b     *Bulk
	ctx   context.Context
	stop  func() bool // context.AfterFunc's: the interrupt
	ended bool        // under b.imu: the interrupt must do nothing
}

// Begin begins a transaction that takes the file's write lock at once
// (BEGIN IMMEDIATE, as sqliteDSN's _txlock). Waiting for another process
// to release the lock ends at ctx's deadline, or after sqliteBusyTimeout
// without one; once ctx is done, the statement running is interrupted
// (https://www.sqlite.org/c3ref/interrupt.html) and returns an error.
func (b *Bulk) Begin(ctx context.Context) (*BulkTx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wait := sqliteBusyTimeout * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	sqlite3.Xsqlite3_busy_timeout(b.tls, b.h, int32(max(wait.Milliseconds(), 1)))
	tx := &BulkTx{b: b, ctx: ctx}
	tx.stop = context.AfterFunc(ctx, func() {
		b.imu.Lock()
		defer b.imu.Unlock()
		if !tx.ended && b.h != 0 {
			sqlite3.Xsqlite3_interrupt(b.itls, b.h)
		}
	})
	b.tx = tx
	if err := b.exec("BEGIN IMMEDIATE"); err != nil {
		tx.end()
		return nil, ctxErr(ctx, err)
	}
	return tx, nil
}

// InTx runs fn in one transaction on b, as InTx does on the driver's
// connection: committed when fn returns nil, rolled back otherwise. A
// failed rollback is reported with fn's error, which it never hides.
func (b *Bulk) InTx(ctx context.Context, fn func(*BulkTx) error) error {
	tx, err := b.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %w)", err, rerr)
		}
		return err
	}
	return tx.Commit()
}

// ctxErr is err, joined with ctx's error once ctx is done (an interrupted
// statement's error says only "interrupted").
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// Commit commits the transaction; when it fails, the transaction is
// rolled back.
func (tx *BulkTx) Commit() error {
	defer tx.end()
	if err := tx.b.exec("COMMIT"); err != nil {
		_ = tx.rollback() // the commit's error is the one to report
		return ctxErr(tx.ctx, err)
	}
	return nil
}

// Rollback rolls the transaction back, unless SQLite already did (an
// interrupt, an I/O error: https://www.sqlite.org/lang_transaction.html,
// "Response To Errors Within A Transaction").
func (tx *BulkTx) Rollback() error {
	defer tx.end()
	return tx.rollback()
}

// end turns the context's interrupt off: a later end of the context must
// not interrupt the handle's next transaction. (An interrupt when no
// statement runs does nothing: https://www.sqlite.org/c3ref/interrupt.html.)
func (tx *BulkTx) end() {
	tx.stop()
	tx.b.imu.Lock()
	tx.ended = true
	tx.b.imu.Unlock()
	if tx.b.tx == tx {
		tx.b.tx = nil
	}
}

func (tx *BulkTx) rollback() error {
	if sqlite3.Xsqlite3_get_autocommit(tx.b.tls, tx.b.h) != 0 {
		return nil // no transaction is open
	}
	return tx.b.exec("ROLLBACK")
}

// bulkHandle is a Stmts's Bulk handle, opened on first use.
type bulkHandle struct {
	mu   sync.Mutex
	path string // the store's file; "" when it has none (NewStmts)
	b    *Bulk
}

// ErrNoBulk is Stmts.Bulk's answer on a store opened without its file's
// path (NewStmts).
var ErrNoBulk = errors.New("db: no SQLite file to open a bulk handle on")

// Bulk runs f on the store's Bulk handle, opened on the first call. It
// holds the store's one connection meanwhile, waiting for it as any other
// use does, so nothing else in this process touches the file while f
// writes: the handle never waits for this process's own lock. A
// transaction f leaves open is rolled back. After a panic in f, or when
// the handle cannot leave a transaction, it is closed, and the next call
// opens another.
func (s *Stmts) Bulk(ctx context.Context, f func(*Bulk) error) error {
	if s.bulk.path == "" {
		return ErrNoBulk
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	if s.bulk.b == nil {
		b, err := openBulk(s.bulk.path)
		if err != nil {
			return fmt.Errorf("db: open %s for bulk writes: %w", s.bulk.path, err)
		}
		s.bulk.b = b
	}
	b := s.bulk.b
	ok := false
	defer func() {
		if !ok {
			s.bulk.b = nil
			b.close()
		}
	}()
	err = f(b)
	ok = b.idle()
	return err
}

// idle ends a transaction f left open, rolled back, and reports whether
// the handle is out of any transaction now; if not, Stmts.Bulk closes it
// (SQLite rolls back what a closing handle left uncommitted).
func (b *Bulk) idle() bool {
	if b.tx != nil {
		b.tx.end()
	}
	if sqlite3.Xsqlite3_get_autocommit(b.tls, b.h) != 0 {
		return true
	}
	return b.exec("ROLLBACK") == nil && sqlite3.Xsqlite3_get_autocommit(b.tls, b.h) != 0
}

// closeBulk closes the Bulk handle, if open.
func (s *Stmts) closeBulk() {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	if s.bulk.b != nil {
		s.bulk.b.close()
		s.bulk.b = nil
	}
}
