package decisionlog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// columns is the insert order of Row's fields, shared by both stores.
var columns = []string{
	"time", "host", "client", "client_name", "helo", "sender", "recipient",
	"instance", "queue_id", "check_name", "action", "would_action", "verb",
	"reason", "delay_seconds", "duration_us", "observe", "whitelist", "errors",
}

// dialect is one store kind's way to keep the decisions table, chosen per
// call by dialectOf (db.Dialect).
type dialect interface {
	// insert writes rows in one transaction and returns how many rows
	// it held (written, or lost with the error). On SQLite, waits (when
	// not nil) counts what waited for the store's connection: when the
	// count moves during the transaction, it ends early.
	insert(ctx context.Context, rows []Row, waits *storeWaits) (int, error)
	// ensurePartitions creates the missing daily partitions of days.
	ensurePartitions(ctx context.Context, days []time.Time) ([]string, error)
	prune(ctx context.Context, res *PruneResult, dryRun bool) error
	// indexClosedDays builds (or with dryRun lists) the client index of
	// each ended day's partition that lacks one (clientindex.go).
	indexClosedDays(ctx context.Context, now time.Time, dryRun bool) ([]string, error)
}

func dialectOf(d *db.DB) dialect {
	return db.Dialect[dialect](d.Kind(), pgLog{d}, sqliteLog{d})
}

// pgLog is the PostgreSQL decision log: a table partitioned by day.
type pgLog struct{ d *db.DB }

// sqliteLog is the SQLite decision log: one table.
type sqliteLog struct{ d *db.DB }

// Insert writes rows in one batch: a binary COPY on PostgreSQL (the
// cheapest way in, and rows route to their daily partitions; pgcopy.go
// encodes it), one transaction of multi-row inserts on SQLite. The batch
// is all or nothing.
func Insert(ctx context.Context, d *db.DB, rows []Row) error {
	_, err := insertSome(ctx, d, rows, nil)
	return err
}

// insertSome is the Writer's Insert: on SQLite the transaction ends early
// when something waits for the connection (waits, the Writer's count of
// waits; sqliteLog.insert), and insertSome returns how many of rows its
// transaction held, written or, with the error, lost.
func insertSome(ctx context.Context, d *db.DB, rows []Row, waits *storeWaits) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	n, err := dialectOf(d).insert(ctx, rows, waits)
	if err != nil {
		return n, fmt.Errorf("decisionlog: insert %d rows: %w", n, err)
	}
	return n, nil
}

// insert sends the batch as one COPY inside an explicit transaction.
// COPY on its own commits as soon as the server has read the data: a
// batch whose write timed out on our side (a locked table, a frozen
// server) would still be stored once the server got to it, after it was
// counted as dropped. Inside a transaction it is stored only by the
// COMMIT this sends after the COPY succeeded; a connection given up
// before that rolls it back.
//
// The transaction commits with synchronous_commit off, as the greylist
// statements do (greylist/pgstore.go): the COMMIT does not wait for its
// WAL to reach disk. A crash of the server can lose the last moments of
// rows, never the table's consistency ("Asynchronous Commit", PostgreSQL
// documentation 28.4); a durable commit would cost one WAL flush per
// batch for rows that are a report's, not mail's.
func (p pgLog) insert(ctx context.Context, rows []Row, _ *storeWaits) (int, error) {
	return len(rows), p.copy(ctx, rows)
}

func (p pgLog) copy(ctx context.Context, rows []Row) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	*bp = encodeCopy((*bp)[:0], rows)
	conn, err := p.d.PG.Acquire(ctx)
	if err != nil {
		return notStored{err}
	}
	defer conn.Release() // the pool closes a connection left in a transaction
	tx, err := conn.Begin(ctx)
	if err != nil {
		return notStored{err}
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, asyncCommitSQL); err != nil {
		return notStored{err}
	}
	tag, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(*bp), copySQL)
	if err == nil && tag.RowsAffected() != int64(len(rows)) {
		err = fmt.Errorf("copied %d rows of %d", tag.RowsAffected(), len(rows))
	}
	if err != nil {
		return notStored{err}
	}
	// A COMMIT whose answer was lost may have stored the rows: its
	// failure is not marked, and the batch is not sent again.
	return tx.Commit(ctx)
}

// errNotStored matches a PostgreSQL batch failure that came before its
// COMMIT was sent: the server cannot have stored the batch (an
// uncommitted transaction is rolled back when its connection ends), so
// sending it again cannot store a row twice (Writer.insertRetrying).
var errNotStored = errors.New("decisionlog: batch not stored")

// notStored is a failure before the COMMIT; it reads as err and matches
// both err and errNotStored.
type notStored struct{ err error }

func (e notStored) Error() string   { return e.err.Error() }
func (e notStored) Unwrap() []error { return []error{e.err, errNotStored} }

// asyncCommitSQL makes the COPY's transaction commit without waiting for
// its WAL flush (pgLog.insert).
const asyncCommitSQL = "SET LOCAL synchronous_commit TO off"

// sqliteInserts[i] is the SQLite INSERT of 2^i rows; sqliteTxRows, the
// largest, is the most rows the Writer puts in one SQLite transaction.
// One multi-row INSERT ... VALUES (...), (...) is bound and stepped once
// for its rows, where a one-row statement pays the driver's round per
// row (https://www.sqlite.org/lang_insert.html). The sizes are powers of
// two, so a batch of any size takes at most one statement per size, each
// compiled once per handle (db.Bulk); 64 rows bind 1,216
// parameters, far below SQLite's limit of 32,766
// (https://www.sqlite.org/limits.html, SQLITE_MAX_VARIABLE_NUMBER).
//
// OR FAIL: a statement that writes several rows and may fail on a
// constraint needs a statement journal to undo its own earlier rows
// (https://www.sqlite.org/tempfiles.html, "Statement Journal Files").
// FAIL keeps them instead (https://www.sqlite.org/lang_conflict.html);
// the batch is still all or nothing, because insert then rolls back the
// whole transaction.
//
// A text column's value is its parameter or, when that is NULL, the
// empty string, and an empty text is bound as NULL (bindSQLiteRow): a
// text is copied into C memory to be bound (db.BulkStmt.TextOrNull), a NULL is
// not. About a third of a decision's texts are empty (no queue ID before
// DATA, no would-be action, whitelist or errors).
var sqliteInserts = func() (q [7]string) {
	values := make([]string, len(columns))
	for i := range values {
		values[i] = "?"
		if sqliteText[i] {
			values[i] = "IFNULL(?, '')"
		}
	}
	row := "(" + strings.Join(values, ", ") + ")"
	head := "INSERT OR FAIL INTO decisions (" + strings.Join(columns, ", ") + ") VALUES "
	for i := range q {
		q[i] = head + strings.Repeat(row+", ", 1<<i-1) + row
	}
	return q
}()

// sqliteText[i] says whether columns[i] is a text column
// (migrations/sqlite/0007_decisions_verb_check.sql), as bindSQLiteRow
// binds it.
var sqliteText = func() []bool {
	t := make([]bool, len(columns))
	for i, c := range columns {
		switch c {
		case "time", "delay_seconds", "duration_us", "observe":
		default:
			t[i] = true
		}
	}
	return t
}()

const sqliteTxRows = 1 << (len(sqliteInserts) - 1)

// sqliteChunk is the index in sqliteInserts of the largest INSERT for n
// rows (n > 0).
func sqliteChunk(n int) int { return min(bits.Len(uint(n)), len(sqliteInserts)) - 1 }

// insert writes rows in one transaction of multi-row INSERTs. The
// transaction holds the store's one connection, which greylisting
// shares: when waits has moved since BEGIN after a statement of
// sqliteTxRows rows (something waits for the connection), it commits the
// rows so far and returns, so a greylist decision waits for one
// statement of at most sqliteTxRows rows (about 2 ms, 9 at p99, measured
// with 64 busy connections), not a whole batch (500 rows held the
// connection 10 to 30 ms). When nothing waits, the whole batch is one
// transaction: a commit per 64 rows cost the daemon an eighth of its CPU
// on cached decisions.
//
// When nothing has waited for the connection through the writer's last
// few transactions (greylisting answers from memory: known triplets), the
// writer also yields the CPU between statements (storeWaits.yield). A
// statement is about a millisecond of the SQLite library's work in this
// goroutine, and Go's scheduler takes a P back from a running goroutine
// only after 10 ms (forcePreemptNS, src/runtime/proc.go): a 500-row
// transaction held one of the daemon's two Ps for its whole run, and the
// requests waited for the other. While greylisting does use the store, a
// yield would hold its connection longer instead, so there is none.
//
// The statements run on the store's Bulk handle (db.Stmts.Bulk), which
// binds each value with one call into SQLite, where the driver's
// connection took a mutex and a C string per value (internal/db/bulk.go).
func (l sqliteLog) insert(ctx context.Context, rows []Row, waits *storeWaits) (int, error) {
	n := len(rows) // what the transaction held, if it fails before its first statement
	err := l.d.Stmts().Bulk(ctx, func(b *db.Bulk) error {
		var err error
		n, err = sqliteInsertTx(ctx, b, rows, waits)
		return err
	})
	return n, err
}

// sqliteInsertTx is insert's transaction on the handle b.
func sqliteInsertTx(ctx context.Context, b *db.Bulk, rows []Row, waits *storeWaits) (int, error) {
	var stmts [len(sqliteInserts)]*db.BulkStmt
	for rest := rows; len(rest) > 0; rest = rest[1<<sqliteChunk(len(rest)):] {
		i := sqliteChunk(len(rest))
		if stmts[i] != nil {
			continue
		}
		st, err := b.Prepare(sqliteInserts[i])
		if err != nil {
			return len(rows), err
		}
		stmts[i] = st
	}
	n := 0
	err := b.InTx(ctx, func(tx *db.BulkTx) (err error) {
		n, err = insertChunks(tx, &stmts, rows, waits)
		return err
	})
	if err != nil && n == 0 {
		n = len(rows) // what the transaction held, as it failed before its first statement
	}
	return n, err
}

// insertChunks runs rows' statements in tx, the largest first, and
// returns how many rows they held: all of them, or fewer when something
// came to wait for the store's connection (sqliteLog.insert).
func insertChunks(tx *db.BulkTx, stmts *[len(sqliteInserts)]*db.BulkStmt, rows []Row, waits *storeWaits) (int, error) {
	var mark int64 // after BEGIN: the transaction's own wait is not a waiter
	calm := false  // nothing waited through the last calmAfter transactions
	if waits != nil {
		mark = waits.count()
		calm = waits.begin(mark)
	}
	n := 0
	for n < len(rows) {
		i := sqliteChunk(len(rows) - n)
		for j := range 1 << i {
			bindSQLiteRow(stmts[i], j*len(columns), &rows[n+j])
		}
		n += 1 << i
		if err := tx.Exec(stmts[i]); err != nil {
			return n, err
		}
		if n == len(rows) {
			break
		}
		if calm && waits.count() == mark {
			waits.yield()
		}
		// Checked after the yield, so that what came to wait meanwhile
		// waits no further statement. A batch's tail (under sqliteTxRows
		// rows, in statements of decreasing size) stays in the transaction
		// of its last full one.
		if waits != nil && 1<<i == sqliteTxRows && waits.count() != mark {
			break
		}
	}
	return n, nil
}

// storeWaits is what the Writer knows about the waits for the SQLite
// store's one connection (sqliteLog.insert).
type storeWaits struct {
	count func() int64 // database/sql's DBStats.WaitCount
	last  int64        // count as the writer's previous transaction began
	calm  int          // transactions in a row, up to calmAfter, begun with no new wait
	yield func()       // runtime.Gosched; tests count the calls
}

// calmAfter is how many transactions in a row must begin with nothing
// having waited for the connection since the one before, for the writer
// to yield between statements. Under greylisting's new triplets about
// one such start in five is chance (docs/PERFORMANCE.md, "Tails");
// several in a row mean greylisting leaves the store alone.
const calmAfter = 4

// begin notes the count of waits, mark, as a transaction begins and says
// whether the store is calm.
func (w *storeWaits) begin(mark int64) bool {
	if mark == w.last {
		w.calm = min(w.calm+1, calmAfter)
	} else {
		w.calm = 0
	}
	w.last = mark
	return w.calm >= calmAfter
}

func newStoreWaits(d *sql.DB) *storeWaits {
	return &storeWaits{count: func() int64 { return d.Stats().WaitCount }, yield: runtime.Gosched}
}

// bindSQLiteRow binds r's values in the order of columns to the
// parameters of st from base+1 on. An empty text binds NULL, which the
// statement stores as the empty string (sqliteInserts).
func bindSQLiteRow(st *db.BulkStmt, base int, r *Row) {
	observe := int64(0)
	if r.Observe {
		observe = 1
	}
	k := base
	num := func(v int64) { k++; st.Int(k, v) }
	text := func(v string) { k++; st.TextOrNull(k, v) }
	num(r.Time.Unix())
	text(r.Host)
	if k++; r.Client.IsValid() {
		// As PostgreSQL's inet prints it (appendInet stores it there), so
		// that both stores report one client; copied as it is bound.
		var b [64]byte
		st.TextBytes(k, db.AppendInetText(b[:0], r.Client))
	} else {
		st.Null(k)
	}
	for _, v := range [...]string{r.ClientName, r.Helo, r.Sender, r.Recipient,
		r.Instance, r.QueueID, r.Check, r.Action, r.WouldAction, r.Verb, r.Reason} {
		text(v)
	}
	num(int64(seconds(r)))
	num(int64(micros(r)))
	num(observe)
	text(r.Whitelist)
	text(r.Errors)
}

// seconds rounds the greylisting delay to whole seconds, as the
// X-Greylist header states it; a delay under half a second is still a
// delay, so it counts as 1.
func seconds(r *Row) int32 {
	if r.Delay <= 0 {
		return 0
	}
	return int32(min(max(1, r.Delay.Round(time.Second)/time.Second), 1<<31-1))
}

func micros(r *Row) int32 {
	return int32(min(r.Duration.Microseconds(), 1<<31-1))
}
