package greylist

import (
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/batch"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// BatchOptions bound how a batched store groups concurrent decisions into
// one transaction. Zero fields take the store's defaults.
type BatchOptions struct {
	// MaxRows is the most decisions in one transaction (default 64).
	MaxRows int
	// Window is how long the first decision of a group waits for others
	// before the group is sent, unless it fills first; negative sends what
	// is already queued without waiting. Default: 1 ms on both stores.
	// On SQLite, without a window, most groups held one decision and each
	// paid a transaction of its own (NewSQLiteBatchStore).
	Window time.Duration
	// MaxInFlight is how many groups may be in the database at once
	// (default 4 on PostgreSQL; always 1 on SQLite, which has one writer).
	MaxInFlight int
}

// NewBatchStore is NewStore with batching: the PGBatchStore or the
// SQLiteBatchStore for an open, migrated database. Call stop, which sends
// what is queued, before closing the database.
func NewBatchStore(d *db.DB, opts BatchOptions) (s Store, stop func()) {
	return db.Dialect(d.Kind(), newPGBatch, newSQLiteBatch)(d, opts)
}

func newPGBatch(d *db.DB, opts BatchOptions) (Store, func()) {
	s := NewPGBatchStore(d.PG, opts)
	return s, s.Close
}

func newSQLiteBatch(d *db.DB, opts BatchOptions) (Store, func()) {
	s := NewSQLiteBatchStore(d, opts)
	return s, s.Close
}

// DefaultBatchRows is the group size when BatchOptions.MaxRows is zero.
const DefaultBatchRows = 64

func (o BatchOptions) withDefaults(window time.Duration, inFlight int) BatchOptions {
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultBatchRows
	}
	switch {
	case o.Window == 0:
		o.Window = window
	case o.Window < 0:
		o.Window = 0
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = inFlight
	}
	return o
}

// BatchStats counts what a batched store sent to the database:
// transactions attempted (resends included) and the decisions in them.
type BatchStats = batch.Stats

// decideArg is one Decide's arguments, queued.
type decideArg struct {
	now time.Time
	cfg *Config
	k   Key
}

// request is one queued Decide and result its answer; flushFunc runs a
// group of them in one transaction (batch.Flush: a *batch.RowError means
// one request's statement failed and the transaction was rolled back).
type (
	request   = batch.Call[decideArg, Outcome]
	result    = batch.Result[Outcome]
	flushFunc = batch.Flush[decideArg, Outcome]
)

// newBatcher starts the batcher of a store.
func newBatcher(opts BatchOptions, flush flushFunc) *batch.Batcher[decideArg, Outcome] {
	return batch.New(batch.Options{MaxRows: opts.MaxRows, Window: opts.Window, MaxInFlight: opts.MaxInFlight}, flush)
}
