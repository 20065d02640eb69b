package greylist

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgAdmin is Admin on PostgreSQL.
type pgAdmin struct{ pool *pgxpool.Pool }

// pgMatch is the selector condition shared by list, release and forget:
// $1 client key, $2 sender, $3 recipient, each "" for any.
const pgMatch = `($1::text = '' OR client_key = $1) AND ($2::text = '' OR sender = $2) AND ($3::text = '' OR recipient = $3)`

const (
	pgList = `SELECT client_key, sender, recipient, raw_sender, host(client_addr), first_seen, last_seen,
		passed_at, attempts, passes
	FROM greylist_triplet
	WHERE ` + pgMatch + `
		AND ($4::text = '' OR ($4 = 'pending') = (passed_at IS NULL))
		AND ($5::timestamptz IS NULL OR first_seen < $5) AND ($6::timestamptz IS NULL OR first_seen >= $6)
	ORDER BY first_seen DESC, client_key, sender, recipient
	LIMIT CASE WHEN $7::int < 0 THEN NULL ELSE $7 END`

	// pgRelease: passes 0 with passed_at set makes the next attempt the
	// first pass (VerdictPassed), as after a real delay.
	pgRelease = `UPDATE greylist_triplet SET passed_at = $4, last_seen = $4, passes = 0
	WHERE passed_at IS NULL AND ` + pgMatch

	pgForgetTriplets = `DELETE FROM greylist_triplet WHERE ` + pgMatch
	// $1 client key, $2 sender domain; $3 everything.
	pgForgetPairs = `DELETE FROM greylist_awl_pair
	WHERE $3::bool OR (($1::text <> '' OR $2::text <> '') AND ($1 = '' OR client_key = $1) AND ($2 = '' OR sender_domain = $2))`
	pgForgetClients = `DELETE FROM greylist_awl_client WHERE $2::bool OR client_net = $1::cidr`

	pgBumpVersion = `UPDATE greylist_version SET version = version + 1`
	pgVersion     = `SELECT version FROM greylist_version`
)

func pgSelArgs(s selection) []any { return []any{s.clientKey, s.sender, s.recipient} }

func (p pgAdmin) list(ctx context.Context, s selection, f Filter, limit int) ([]Row, error) {
	id := func(t time.Time) any { return t }
	args := append(pgSelArgs(s), string(f.State), optTime(f.OlderThan, id), optTime(f.NewerThan, id), limit)
	rows, err := p.pool.Query(ctx, pgList, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
		var x Row
		err := r.Scan(&x.ClientKey, &x.Sender, &x.Recipient, &x.RawSender, &x.ClientAddr, &x.FirstSeen,
			&x.LastSeen, &x.PassedAt, &x.Attempts, &x.Passes)
		x.State = rowState(x.PassedAt)
		return x, err
	})
}

func (p pgAdmin) release(ctx context.Context, s selection, now time.Time) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, pgRelease, append(pgSelArgs(s), now)...)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, pgBumpVersion)
		return err
	})
	return n, err
}

func (p pgAdmin) forget(ctx context.Context, s selection) (ForgetResult, error) {
	var r ForgetResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, pgForgetTriplets, pgSelArgs(s)...)
		if err != nil {
			return err
		}
		r.Triplets = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, pgForgetPairs, s.clientKey, s.senderDomain, s.all); err != nil {
			return err
		}
		r.Pairs = tag.RowsAffected()
		if s.net.IsValid() || s.all {
			var nw any
			if s.net.IsValid() {
				nw = s.net
			}
			if tag, err = tx.Exec(ctx, pgForgetClients, nw, s.all); err != nil {
				return err
			}
			r.AWLClients = tag.RowsAffected()
		}
		if r == (ForgetResult{}) {
			return nil
		}
		_, err = tx.Exec(ctx, pgBumpVersion)
		return err
	})
	return r, err
}

func (p pgAdmin) version(ctx context.Context) (int64, error) {
	var v int64
	err := p.pool.QueryRow(ctx, pgVersion).Scan(&v)
	return v, err
}

// Imports merge into existing rows only where they know more (Import).
const (
	pgImportTriplet = `INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net,
		client_addr, raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	VALUES ($1, $2, $3, 'net', $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = EXCLUDED.first_seen, last_seen = GREATEST(g.last_seen, EXCLUDED.last_seen),
		passed_at = EXCLUDED.passed_at, attempts = GREATEST(g.attempts, EXCLUDED.attempts), passes = EXCLUDED.passes
	WHERE g.passed_at IS NULL AND (EXCLUDED.passed_at IS NOT NULL OR EXCLUDED.first_seen < g.first_seen)`

	pgImportClient = `INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	VALUES ($1, $2, $3, $4, $4, $5)
	ON CONFLICT (client_net) DO UPDATE SET passes = EXCLUDED.passes,
		first_seen = LEAST(a.first_seen, EXCLUDED.first_seen), last_seen = GREATEST(a.last_seen, EXCLUDED.last_seen)
	WHERE EXCLUDED.passes > a.passes`

	pgImportPair = `INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	VALUES ($1, $2, 'net', $3, $4, $5, $6)
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = LEAST(p.first_seen, EXCLUDED.first_seen), last_seen = GREATEST(p.last_seen, EXCLUDED.last_seen)
	WHERE EXCLUDED.first_seen < p.first_seen OR EXCLUDED.last_seen > p.last_seen`
)

// pgImportChunk is how many rows one pipelined batch sends.
const pgImportChunk = 1000

func (p pgAdmin) load(ctx context.Context, set ImportSet) (ImportResult, error) {
	var r ImportResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		r = ImportResult{}
		var b pgBatcher
		for _, t := range set.Triplets {
			attempts, passes := importPassCounts(t)
			var passed any
			if !t.PassedAt.IsZero() {
				passed = t.PassedAt
			}
			b.add(ctx, tx, &r.Triplets, pgImportTriplet, netKey(t.Net), t.Sender, t.Recipient, t.Net, t.Addr,
				t.RawSender, t.FirstSeen, t.LastSeen, passed, attempts, passes)
		}
		for _, c := range set.Clients {
			b.add(ctx, tx, &r.Clients, pgImportClient, c.Net, c.Addr, c.FirstSeen, c.LastSeen, c.Passes)
		}
		for _, q := range set.Pairs {
			b.add(ctx, tx, &r.Pairs, pgImportPair, netKey(q.Net), q.SenderDomain, q.Net, q.Addr, q.FirstSeen, q.LastSeen)
		}
		return b.flush(ctx, tx)
	})
	return r, err
}

// pgBatcher pipelines statements in chunks and adds each one's affected
// rows to its counter; the first error sticks.
type pgBatcher struct {
	batch  pgx.Batch
	counts []*int64
	err    error
}

func (b *pgBatcher) add(ctx context.Context, tx pgx.Tx, count *int64, sql string, args ...any) {
	b.batch.Queue(sql, args...)
	b.counts = append(b.counts, count)
	if b.batch.Len() >= pgImportChunk {
		b.err = b.flush(ctx, tx)
	}
}

func (b *pgBatcher) flush(ctx context.Context, tx pgx.Tx) error {
	if b.err != nil || b.batch.Len() == 0 {
		return b.err
	}
	res := tx.SendBatch(ctx, &b.batch)
	for _, c := range b.counts {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			b.err = err
			return err
		}
		*c += tag.RowsAffected()
	}
	b.batch, b.counts = pgx.Batch{}, nil
	b.err = res.Close()
	return b.err
}
