package greylist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGStore is the PostgreSQL Store. Every decision is one statement, so one
// round trip; pgxpool reconnects by itself after the server comes back.
type PGStore struct {
	pool *pgxpool.Pool
}

// NewPGStore returns a Store on a migrated database.
func NewPGStore(pool *pgxpool.Pool) *PGStore { return &PGStore{pool: pool} }

// pgDecide is the whole decision in one statement. The CTEs run in order
// of dependency: an auto-whitelisted client or pair is refreshed and the
// triplet is not touched; otherwise the triplet is upserted under its row
// lock, so of concurrent first attempts exactly one sees attempts = 1;
// then a pass is counted towards the client AWL (at most once per $13)
// and records the pair. Each row is modified by at most one CTE, as
// PostgreSQL requires.
//
// The round of a triplet restarts (attempts 1) when it expired: pending
// past the retry window ($11), or passed but unseen for max age ($12).
//
// set_config('synchronous_commit', 'off', true) applies to this
// statement's own transaction only: the commit returns before the WAL is
// flushed. A crash can lose the last fraction of a second of greylist
// updates, which only makes a sender retry once more; the write latency
// saved is a disk flush per decision. Nothing else is written this way.
const pgDecide = `
WITH awl_client AS (
	UPDATE greylist_awl_client SET last_seen = $9::timestamptz
	WHERE $14::int > 0 AND client_net = $5::cidr AND passes >= $14::int AND last_seen >= $12::timestamptz
	RETURNING passes
), awl_pair AS (
	UPDATE greylist_awl_pair SET last_seen = $9::timestamptz, client_addr = $6::inet
	WHERE $15::bool AND $8::text <> '' AND client_key = $1::text AND sender_domain = $8::text
		AND last_seen >= $12::timestamptz AND NOT EXISTS (SELECT FROM awl_client)
	RETURNING 1
), triplet AS (
	INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net, client_addr,
		raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	SELECT $1::text, $2::text, $3::text, $4::text, $5::cidr, $6::inet, $7::text,
		$9::timestamptz, $9::timestamptz, NULL, 1, 0
	WHERE NOT EXISTS (SELECT FROM awl_client) AND NOT EXISTS (SELECT FROM awl_pair)
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = CASE WHEN ` + pgExpired + ` THEN $9 ELSE g.first_seen END,
		passed_at = CASE WHEN ` + pgExpired + ` THEN NULL
			WHEN g.passed_at IS NOT NULL THEN g.passed_at
			WHEN g.first_seen <= $10::timestamptz THEN $9 END,
		attempts = CASE WHEN ` + pgExpired + ` THEN 1 ELSE g.attempts + 1 END,
		passes = CASE WHEN ` + pgExpired + ` THEN 0
			WHEN g.passed_at IS NOT NULL OR g.first_seen <= $10 THEN g.passes + 1
			ELSE g.passes END,
		last_seen = $9, client_net = EXCLUDED.client_net, client_addr = EXCLUDED.client_addr,
		raw_sender = EXCLUDED.raw_sender
	RETURNING g.first_seen, g.passed_at, g.attempts, g.passes
), count_client AS (
	INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	SELECT $5, $6, $9, $9, $9, 1
	WHERE $14 > 0 AND (EXISTS (SELECT FROM triplet WHERE passes > 0) OR EXISTS (SELECT FROM awl_pair))
	ON CONFLICT (client_net) DO UPDATE SET
		passes = CASE WHEN a.last_seen < $12 THEN 1
			WHEN a.last_counted <= $13::timestamptz THEN a.passes + 1 ELSE a.passes END,
		last_counted = CASE WHEN a.last_seen < $12 OR a.last_counted <= $13 THEN $9 ELSE a.last_counted END,
		first_seen = CASE WHEN a.last_seen < $12 THEN $9 ELSE a.first_seen END,
		last_seen = $9, client_addr = $6
), count_pair AS (
	INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	SELECT $1, $8, $4, $5, $6, $9, $9
	WHERE $15 AND $8 <> '' AND EXISTS (SELECT FROM triplet WHERE passes > 0)
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = CASE WHEN p.last_seen < $12 THEN $9 ELSE p.first_seen END,
		last_seen = $9, client_net = $5, client_addr = $6
)
SELECT EXISTS (SELECT FROM awl_client), EXISTS (SELECT FROM awl_pair),
	t.first_seen, t.passed_at, t.attempts, t.passes
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS sc
LEFT JOIN triplet t ON true`

// pgExpired: the existing row's round is over; a pending row first seen
// more than a minute after now (clockSlack) is too, as on SQLite
// (liteExpired).
const pgExpired = `((g.passed_at IS NULL AND (g.first_seen < $11::timestamptz
		OR g.first_seen > $9::timestamptz + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < $12::timestamptz))`

// Decide records one attempt and returns the verdict.
func (s *PGStore) Decide(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error) {
	args := pgDecideArgs(newCutoffs(now, cfg), cfg, k)
	var row pgDecideRow
	err := s.pool.QueryRow(ctx, pgDecide, args...).Scan(row.dest()...)
	if connLost(err) && ctx.Err() == nil {
		// The pooled connection died (server restart, failover); the pool
		// has dropped it, so try once more on a fresh one. Repeating the
		// statement is harmless even if the first one committed: it counts
		// one more attempt of a triplet that is deferred or passed anyway.
		row = pgDecideRow{}
		err = s.pool.QueryRow(ctx, pgDecide, args...).Scan(row.dest()...)
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("greylist: postgres decide: %w", err)
	}
	return row.outcome()
}

// pgDecideArgs are pgDecide's parameters $1 to $15, in order; PGStore and
// PGBatchStore both send them.
func pgDecideArgs(c cutoffs, cfg *Config, k Key) []any {
	return []any{k.ClientKey, k.Sender, k.Recipient, k.Kind, k.Net, k.Addr, k.RawSender, k.SenderDomain,
		c.now, c.delay, c.window, c.maxAge, c.count, cfg.AWLClientPasses, cfg.AWLPair}
}

// pgDecideRow is pgDecide's result row.
type pgDecideRow struct {
	awlClient, awlPair bool
	first, passed      *time.Time
	attempts, passes   *int
}

func (r *pgDecideRow) dest() []any {
	return []any{&r.awlClient, &r.awlPair, &r.first, &r.passed, &r.attempts, &r.passes}
}

func (r *pgDecideRow) outcome() (Outcome, error) {
	switch {
	case r.awlClient:
		return Outcome{Verdict: VerdictAWLClient}, nil
	case r.awlPair:
		return Outcome{Verdict: VerdictAWLPair}, nil
	case r.first == nil:
		return Outcome{}, errors.New("greylist: postgres decide returned no triplet")
	}
	return outcome(*r.first, r.passed, *r.attempts, *r.passes), nil
}

// connLost reports whether err means the connection, not the statement,
// failed: the server shut the session down or the socket broke.
func connLost(err error) bool {
	if err == nil {
		return false
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout()
}

// gcTarget is one kind of expired row: its table and the condition, with
// $1 the cutoff instant.
type gcTarget struct {
	table, where string
	count        *int64
	cutoff       time.Time
}

func gcTargets(now time.Time, cfg *Config, st *GCStats) []gcTarget {
	c := newCutoffs(now, cfg)
	return []gcTarget{
		{"greylist_triplet", "passed_at IS NULL AND first_seen < $1", &st.Pending, c.window},
		{"greylist_triplet", "passed_at IS NOT NULL AND last_seen < $1", &st.Passed, c.maxAge},
		{"greylist_awl_client", "last_seen < $1", &st.AWLClients, c.maxAge},
		{"greylist_awl_pair", "last_seen < $1", &st.AWLPairs, c.maxAge},
	}
}

// GC deletes expired rows in batches. Each batch is one short statement
// that locks its rows with SKIP LOCKED, so gc on several hosts at once
// splits the work instead of waiting, and a request touching a row being
// deleted waits one batch at most. The conditions match the partial
// indexes, so a batch never scans the table.
func (s *PGStore) GC(ctx context.Context, now time.Time, cfg *Config, dryRun bool) (GCStats, error) {
	var st GCStats
	for _, t := range gcTargets(now, cfg, &st) {
		var err error
		if dryRun {
			err = s.pool.QueryRow(ctx, "SELECT count(*) FROM "+t.table+" WHERE "+t.where, t.cutoff).Scan(t.count)
		} else {
			err = s.gcDelete(ctx, t, cfg.GCBatch)
		}
		if err != nil {
			return st, fmt.Errorf("greylist: postgres gc %s: %w", t.table, err)
		}
	}
	return st, nil
}

func (s *PGStore) gcDelete(ctx context.Context, t gcTarget, batch int) error {
	// Table and condition are constants of this file, never user data.
	q := "WITH d AS (SELECT ctid FROM " + t.table + " WHERE " + t.where +
		" LIMIT $2 FOR UPDATE SKIP LOCKED), s AS (SELECT set_config('synchronous_commit', 'off', true)) " +
		"DELETE FROM " + t.table + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM d)) AND EXISTS (SELECT FROM s)"
	for {
		tag, err := s.pool.Exec(ctx, q, t.cutoff, batch)
		if err != nil {
			return err
		}
		*t.count += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
}

const pgPeek = `SELECT
	EXISTS (SELECT FROM greylist_awl_client WHERE $1::int > 0 AND client_net = $2::cidr
		AND passes >= $1 AND last_seen >= $3::timestamptz),
	EXISTS (SELECT FROM greylist_awl_pair WHERE $4::bool AND $5::text <> '' AND client_key = $6::text
		AND sender_domain = $5 AND last_seen >= $3),
	t.first_seen, t.last_seen, t.passed_at, coalesce(t.passes, 0)
FROM (SELECT 1) AS one
LEFT JOIN greylist_triplet t ON t.client_key = $6 AND t.sender = $7::text AND t.recipient = $8::text`

// Peek evaluates a decision without writing anything.
func (s *PGStore) Peek(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error) {
	c := newCutoffs(now, cfg)
	var (
		p           peekState
		first, last *time.Time
	)
	err := s.pool.QueryRow(ctx, pgPeek, cfg.AWLClientPasses, k.Net, c.maxAge, cfg.AWLPair, k.SenderDomain,
		k.ClientKey, k.Sender, k.Recipient).Scan(&p.awlClient, &p.awlPair, &first, &last, &p.passedAt, &p.passes)
	if err != nil {
		return Outcome{}, fmt.Errorf("greylist: postgres peek: %w", err)
	}
	if first != nil && last != nil {
		p.found, p.firstSeen, p.lastSeen = true, *first, *last
	}
	return p.verdict(c), nil
}

// pgDecideSet is pgDecide for many decisions in one statement: row i of
// the arrays $1 to $9 is decision i, and result row i its answer (ordered
// by ord). It runs the same steps as pgDecide, each a set-based statement
// over all the rows, so the executor starts once per group instead of
// once per decision. It only gets decisions of which no two share a
// triplet, a client network (with awl_client_passes on) or a (client key,
// sender domain) pair (with awl_pair on), pgSetSplit: then no two rows
// touch the same database row, each CTE modifies every row at most once,
// as PostgreSQL requires, and each decision gets what it would get alone.
// The durations are the same for all of them ($10 to $13, intervals);
// each row's cutoffs are its own time minus them, as newCutoffs computes
// them.
const pgDecideSet = `
WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::cidr[], $6::inet[],
		$7::text[], $8::text[], $9::timestamptz[])
		WITH ORDINALITY AS i (client_key, sender, recipient, key_kind, client_net, client_addr,
			raw_sender, sender_domain, now, ord)
), awl_client AS (
	UPDATE greylist_awl_client AS a SET last_seen = i.now
	FROM input i
	WHERE $14::int > 0 AND a.client_net = i.client_net AND a.passes >= $14::int
		AND a.last_seen >= i.now - $12::interval
	RETURNING i.ord
), awl_pair AS (
	UPDATE greylist_awl_pair AS p SET last_seen = i.now, client_addr = i.client_addr
	FROM input i
	WHERE $15::bool AND i.sender_domain <> '' AND p.client_key = i.client_key
		AND p.sender_domain = i.sender_domain AND p.last_seen >= i.now - $12::interval
		AND NOT EXISTS (SELECT FROM awl_client c WHERE c.ord = i.ord)
	RETURNING i.ord
), triplet AS (
	INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net, client_addr,
		raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	SELECT i.client_key, i.sender, i.recipient, i.key_kind, i.client_net, i.client_addr, i.raw_sender,
		i.now, i.now, NULL, 1, 0
	FROM input i
	WHERE NOT EXISTS (SELECT FROM awl_client c WHERE c.ord = i.ord)
		AND NOT EXISTS (SELECT FROM awl_pair p WHERE p.ord = i.ord)
	ORDER BY i.ord
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = CASE WHEN ` + pgSetExpired + ` THEN EXCLUDED.last_seen ELSE g.first_seen END,
		passed_at = CASE WHEN ` + pgSetExpired + ` THEN NULL
			WHEN g.passed_at IS NOT NULL THEN g.passed_at
			WHEN g.first_seen <= EXCLUDED.last_seen - $10::interval THEN EXCLUDED.last_seen END,
		attempts = CASE WHEN ` + pgSetExpired + ` THEN 1 ELSE g.attempts + 1 END,
		passes = CASE WHEN ` + pgSetExpired + ` THEN 0
			WHEN g.passed_at IS NOT NULL OR g.first_seen <= EXCLUDED.last_seen - $10::interval THEN g.passes + 1
			ELSE g.passes END,
		last_seen = EXCLUDED.last_seen, client_net = EXCLUDED.client_net, client_addr = EXCLUDED.client_addr,
		raw_sender = EXCLUDED.raw_sender
	RETURNING g.client_key, g.sender, g.recipient, g.first_seen, g.passed_at, g.attempts, g.passes
), counted AS (
	SELECT i.* FROM input i
	WHERE EXISTS (SELECT FROM triplet t WHERE t.client_key = i.client_key AND t.sender = i.sender
			AND t.recipient = i.recipient AND t.passes > 0)
		OR EXISTS (SELECT FROM awl_pair p WHERE p.ord = i.ord)
), count_client AS (
	INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	SELECT i.client_net, i.client_addr, i.now, i.now, i.now, 1
	FROM counted i
	WHERE $14 > 0
	ORDER BY i.ord
	ON CONFLICT (client_net) DO UPDATE SET
		passes = CASE WHEN a.last_seen < EXCLUDED.last_seen - $12 THEN 1
			WHEN a.last_counted <= EXCLUDED.last_seen - $13::interval THEN a.passes + 1 ELSE a.passes END,
		last_counted = CASE WHEN a.last_seen < EXCLUDED.last_seen - $12
			OR a.last_counted <= EXCLUDED.last_seen - $13 THEN EXCLUDED.last_seen ELSE a.last_counted END,
		first_seen = CASE WHEN a.last_seen < EXCLUDED.last_seen - $12 THEN EXCLUDED.last_seen ELSE a.first_seen END,
		last_seen = EXCLUDED.last_seen, client_addr = EXCLUDED.client_addr
), count_pair AS (
	INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	SELECT i.client_key, i.sender_domain, i.key_kind, i.client_net, i.client_addr, i.now, i.now
	FROM input i
	WHERE $15 AND i.sender_domain <> '' AND EXISTS (SELECT FROM triplet t WHERE t.client_key = i.client_key
		AND t.sender = i.sender AND t.recipient = i.recipient AND t.passes > 0)
	ORDER BY i.ord
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = CASE WHEN p.last_seen < EXCLUDED.last_seen - $12 THEN EXCLUDED.last_seen ELSE p.first_seen END,
		last_seen = EXCLUDED.last_seen, client_net = EXCLUDED.client_net, client_addr = EXCLUDED.client_addr
)
SELECT EXISTS (SELECT FROM awl_client c WHERE c.ord = i.ord), EXISTS (SELECT FROM awl_pair p WHERE p.ord = i.ord),
	t.first_seen, t.passed_at, t.attempts, t.passes
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS sc
CROSS JOIN input i
LEFT JOIN triplet t ON t.client_key = i.client_key AND t.sender = i.sender AND t.recipient = i.recipient
ORDER BY i.ord`

// pgSetExpired is pgExpired with the row's own cutoffs ($11 the retry
// window, $12 max age).
const pgSetExpired = `((g.passed_at IS NULL AND (g.first_seen < EXCLUDED.last_seen - $11::interval
		OR g.first_seen > EXCLUDED.last_seen + interval '1 minute'))
	OR (g.passed_at IS NOT NULL AND g.last_seen < EXCLUDED.last_seen - $12::interval))`
