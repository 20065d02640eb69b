package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// warnEvery spaces the warnings about lost rows: an outage is one line a
// minute with the totals, not one line per row or batch.
const warnEvery = time.Minute

// upkeepEvery is how often the writer makes sure the coming days'
// partitions exist; a cheap catalog lookup when they do.
const upkeepEvery = time.Hour

// run is the writer goroutine: it writes the queued rows in batches when
// a batch's worth is queued (Record says so on w.full), on every tick, on
// Flush and on Close. It takes no row from the queue before then: woken
// for every row, as a loop receiving each would be, the writer cost the
// daemon a goroutine switch per decision. A
// panic in code it calls (the pgx or SQLite driver) costs the batch in
// hand, never the process: the loop starts again.
func (w *Writer) run() {
	defer close(w.done)
	w.batch = make([]Row, 0, w.cfg.BatchSize)
	for w.loop() {
	}
}

// loop serves the writer's channels until quit (false) or a panic (true:
// run it again, unless the writer was stopping).
func (w *Writer) loop() (again bool) {
	defer func() {
		if p := recover(); p != nil {
			again = w.recovered(p)
		}
	}()
	for {
		select {
		case <-w.full:
			w.writeFull()
		case <-w.opt.Tick:
			w.drain()
			w.upkeep()
			w.warn(false)
		case ack := <-w.flush:
			w.flushNow(ack)
		case <-w.quit:
			w.stopping = true
			w.drain()
			w.warn(true)
			return false
		}
	}
}

// recovered counts the batch in hand as dropped after a panic, logs the
// panic with its stack, and says whether to run the loop again.
func (w *Writer) recovered(p any) bool {
	n := len(w.batch)
	w.dropWriteError(n)
	clear(w.batch)
	w.batch = w.batch[:0]
	w.lastErr = fmt.Errorf("decisionlog: writer panic: %v", p)
	w.opt.Logger.Error("decision log: writer panicked; batch dropped",
		"rows", n, "panic", p, "stack", string(debug.Stack()))
	return !w.stopping
}

// writeFull writes the whole batches queued when it starts. Rows that
// come meanwhile wait for the next turn of the loop: with a store slower
// than the mail, "while a batch is queued" would never end, and the
// loop's ticks (the warning about lost rows, the partitions' upkeep)
// would wait for the mail to stop.
func (w *Writer) writeFull() {
	for n := len(w.rows) / w.cfg.BatchSize; n > 0; n-- {
		for range w.cfg.BatchSize - len(w.batch) {
			w.batch = append(w.batch, <-w.rows) // only this goroutine receives
		}
		w.write()
	}
}

func (w *Writer) add(r Row) {
	w.batch = append(w.batch, r)
	if len(w.batch) >= w.cfg.BatchSize {
		w.write()
	}
}

// flushNow drains the queue for Flush; ack is closed even after a panic,
// so Flush does not wait for its deadline.
func (w *Writer) flushNow(ack chan struct{}) {
	defer close(ack)
	w.drain()
}

// drain writes the batch and everything queued when it starts, in
// batches; not what comes meanwhile (writeFull).
func (w *Writer) drain() {
	for n := len(w.rows); n > 0; n-- {
		w.add(<-w.rows) // only this goroutine receives
	}
	w.write()
}

// write stores the batch within WriteTimeout, in one transaction or, on
// SQLite while greylisting waits for the connection, several
// (sqliteLog.insert), or drops and counts the rows of a transaction that
// failed, and empties the batch for reuse.
func (w *Writer) write() {
	if len(w.batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.WriteTimeout)
	defer cancel()
	all := w.batch
	for len(w.batch) > 0 {
		// Only the rows not yet sent stay in w.batch: a panic counts them.
		w.batch = w.batch[w.writeTx(ctx, w.batch):]
	}
	clear(all) // release the rows' strings
	w.batch = all[:0]
}

// writeTx writes one transaction of rows, at most all of them, and
// returns how many it held.
func (w *Writer) writeTx(ctx context.Context, rows []Row) int {
	n, err := w.insertRetrying(ctx, rows)
	if n <= 0 || n > len(rows) {
		n = len(rows) // a stand-in's mistake must not stall the loop
	}
	if err != nil {
		w.dropWriteError(n)
		w.lastErr = err
		return n
	}
	w.written.Add(uint64(n))
	if w.opt.Observer != nil {
		w.opt.Observer.LogRowsWritten(n)
	}
	return n
}

// Retries of a batch that PostgreSQL did not store: the first after
// retryFirst, each later one after twice the wait before, at most
// retryMax. A server restarting (pg_ctl restart, a failover) is back
// within seconds, and WriteTimeout ends the retries with the batch.
const (
	retryFirst = 50 * time.Millisecond
	retryMax   = time.Second
)

// insertRetrying inserts rows, and sends them again while a failure
// left them unstored (errNotStored) and may go away by itself
// (db.IsTemporary: a connect refused or timed out, a connection the
// server ended), until ctx, which WriteTimeout bounds, is done. So a
// restart of the database within write_timeout loses no row. A stopping
// writer does not retry: the daemon's shutdown does not wait for a
// database that is down.
func (w *Writer) insertRetrying(ctx context.Context, rows []Row) (int, error) {
	d := retryFirst
	for {
		n, err := w.insert(ctx, w.db, rows, w.waits)
		if err == nil || w.stopping || !errors.Is(err, errNotStored) || !db.IsTemporary(err) {
			return n, err
		}
		if w.opt.Wait(ctx, d) != nil {
			return n, err
		}
		d = min(2*d, retryMax)
	}
}

func (w *Writer) dropWriteError(n int) {
	if n == 0 {
		return
	}
	w.writeErr.Add(uint64(n))
	if w.opt.Observer != nil {
		w.opt.Observer.LogRowsDropped(n)
	}
}

// upkeep creates the coming days' partitions about once an hour, so a
// daemon that runs for weeks without gc still writes into them (on SQLite
// EnsurePartitions does nothing: one table takes every day).
func (w *Writer) upkeep() {
	now := w.opt.Now()
	if now.Before(w.nextUpkeep) {
		return
	}
	w.nextUpkeep = now.Add(upkeepEvery)
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.WriteTimeout)
	defer cancel()
	// An unready database is the connector's to report (internal/db); it
	// serve makes the partitions when the database is back.
	_, err := EnsurePartitions(ctx, w.db, now, w.cfg.PartitionsAhead)
	if err != nil && !errors.Is(err, db.ErrUnavailable) {
		w.opt.Logger.Warn("decision log: cannot create partitions; rows go to decisions_default",
			"err", err)
	}
}

// warn logs the rows lost since the last warning, at most once per
// warnEvery unless final.
func (w *Writer) warn(final bool) {
	now := w.opt.Now()
	if !final && now.Sub(w.lastWarn) < warnEvery {
		return
	}
	st := w.Stats()
	full, failed := st.QueueFull-w.warned.QueueFull, st.WriteError-w.warned.WriteError
	if full == 0 && failed == 0 {
		return
	}
	attrs := []any{"queue_full", full, "write_failed", failed}
	if w.lastErr != nil {
		attrs = append(attrs, "err", w.lastErr)
	}
	w.opt.Logger.Warn("decision log: rows dropped", attrs...)
	w.lastWarn, w.warned, w.lastErr = now, st, nil
}
