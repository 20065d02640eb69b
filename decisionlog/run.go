package decisionlog

import (
	"context"
	"errors"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// warnEvery spaces the warnings about lost rows: an outage is one line a
// minute with the totals, not one line per row or batch.
const warnEvery = time.Minute

// upkeepEvery is how often the writer makes sure the coming days'
// partitions exist; a cheap catalog lookup when they do.
const upkeepEvery = time.Hour

// run is the writer goroutine: it collects rows into a batch and writes
// the batch when it is full, on every tick, on Flush and on Close.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Row, 0, w.cfg.BatchSize)
	for {
		select {
		case r := <-w.rows:
			batch = append(batch, r)
			if len(batch) >= w.cfg.BatchSize {
				batch = w.write(batch)
			}
		case <-w.opt.Tick:
			batch = w.write(batch)
			w.upkeep()
			w.warn(false)
		case ack := <-w.flush:
			batch = w.drain(batch)
			close(ack)
		case <-w.quit:
			w.drain(batch)
			w.warn(true)
			return
		}
	}
}

// drain writes the batch and everything queued now, in batches.
func (w *Writer) drain(batch []Row) []Row {
	for {
		select {
		case r := <-w.rows:
			batch = append(batch, r)
			if len(batch) >= w.cfg.BatchSize {
				batch = w.write(batch)
			}
		default:
			return w.write(batch)
		}
	}
}

// write stores one batch within WriteTimeout, or drops and counts it. It
// returns the emptied batch for reuse.
func (w *Writer) write(batch []Row) []Row {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.WriteTimeout)
	err := Insert(ctx, w.db, batch)
	cancel()
	n := len(batch)
	if err != nil {
		w.writeErr.Add(uint64(n))
		if w.opt.Observer != nil {
			w.opt.Observer.LogRowsDropped(n)
		}
		w.lastErr = err
	} else {
		w.written.Add(uint64(n))
		if w.opt.Observer != nil {
			w.opt.Observer.LogRowsWritten(n)
		}
	}
	clear(batch) // release the rows' strings
	return batch[:0]
}

// upkeep creates the coming days' partitions about once an hour, so a
// daemon that runs for weeks without gc still writes into them.
func (w *Writer) upkeep() {
	if !w.db.IsPostgres() {
		return
	}
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
