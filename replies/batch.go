package replies

import (
	"context"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/batch"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// NewBatchStore is NewStore with its PostgreSQL lookups batched: the
// Match calls that arrive within a millisecond of each other go to the
// database as one statement (internal/batch), instead of one round trip
// and one statement each. Every inbound request with a new pair asks, so
// on a busy MX they come together. SQLite looks up in-process: its store
// is NewStore's. Call stop, which answers what is queued, before closing
// the database.
func NewBatchStore(d *db.DB) (s Store, stop func()) {
	return db.Dialect(d.Kind(), newPGBatch, newLiteBatch)(d)
}

func newLiteBatch(d *db.DB) (Store, func()) { return liteStore{d.SQL}, func() {} }

func newPGBatch(d *db.DB) (Store, func()) {
	s := &pgBatchStore{pgStore: pgStore{d.PG}}
	// The greylist store's group size and window (greylist/batch.go).
	s.b = batch.New(batch.Options{MaxRows: 64, Window: time.Millisecond, MaxInFlight: 4}, s.flush)
	return s, s.b.Close
}

// pgBatchStore is the PostgreSQL store whose Match calls are batched;
// Record and GC are pgStore's.
type pgBatchStore struct {
	pgStore
	b *batch.Batcher[match, bool]
}

// match is one Match call: the pair's local address, the outside key
// (address, or domain with byDomain) and the earliest last_seen.
type match struct {
	local, key string
	byDomain   bool
	since      time.Time
}

func (s *pgBatchStore) Match(ctx context.Context, since time.Time, p Pair, byDomain bool) (bool, error) {
	key := matchKey(p, byDomain)
	if !db.Storable(p.Local, key) {
		return false, nil // what the text type cannot hold was never recorded
	}
	hit, err := s.b.Do(ctx, match{p.Local, key, byDomain, since.Truncate(time.Second)})
	return hit, wrap("postgres match", err)
}

// pgMatchMany is pgMatchAddress or pgMatchDomain for many pairs at once,
// one result row per pair, in order.
const pgMatchMany = `SELECT EXISTS (SELECT FROM replies r WHERE r.local_addr = u.local_addr
		AND r.last_seen >= u.since
		AND CASE WHEN u.by_domain THEN r.outside_domain = u.outside ELSE r.outside_addr = u.outside END)
	FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[])
		WITH ORDINALITY AS u (local_addr, outside, by_domain, since, ord)
	ORDER BY u.ord`

func (s *pgBatchStore) flush(ctx context.Context, group []*batch.Call[match, bool]) ([]batch.Result[bool], error) {
	n := len(group)
	locals, keys, byDomain, since := make([]string, n), make([]string, n), make([]bool, n), make([]time.Time, n)
	for i, c := range group {
		locals[i], keys[i], byDomain[i], since[i] = c.Arg.local, c.Arg.key, c.Arg.byDomain, c.Arg.since
	}
	rows, err := s.pool.Query(ctx, pgMatchMany, locals, keys, byDomain, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := make([]batch.Result[bool], 0, n)
	for rows.Next() {
		var hit bool
		if err := rows.Scan(&hit); err != nil {
			return nil, err
		}
		res = append(res, batch.Result[bool]{Val: hit})
	}
	return res, rows.Err()
}
