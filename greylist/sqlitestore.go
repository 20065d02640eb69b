package greylist

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// SQLiteStore is the embedded Store. A decision is one transaction taken
// with BEGIN IMMEDIATE on the store's Bulk handle (internal/db/bulk.go),
// so it is as atomic as PostgreSQL's one statement; its statements are
// local calls, not round trips. Parameters are numbered like the
// PostgreSQL ones.
//
// The Bulk handle binds a value with one call into SQLite. Through
// database/sql and the driver, each value cost a conversion, a copy into
// C memory and the connection's mutex, and a statement a Stmt bound to
// the transaction and a Result or Row: about as much CPU as SQLite's own
// work on the statement, in the one writer every new triplet waits for
// (docs/PERFORMANCE.md, "SQLite's new triplets on a slow machine").
type SQLiteStore struct {
	db    *sql.DB
	stmts *db.Stmts // the store's: its Bulk handle
}

// NewSQLiteStore returns a Store on a migrated database, opened for
// writing.
func NewSQLiteStore(d *db.DB) *SQLiteStore { return &SQLiteStore{db: d.SQL, stmts: d.Stmts()} }

// liteTx runs decisions' statements in one transaction on the Bulk handle.
type liteTx struct {
	ctx context.Context // the transaction's: checked before each decision
	tx  *db.BulkTx
	st  [len(liteQueries)]*db.BulkStmt
}

// inLiteTx runs fn in one transaction of the decision's statements, on
// the store's Bulk handle: committed when fn returns nil. Once ctx is
// done, the statement running is interrupted and the transaction rolled
// back (db.Bulk.Begin).
func (s *SQLiteStore) inLiteTx(ctx context.Context, fn func(*liteTx) error) error {
	return s.stmts.Bulk(ctx, func(b *db.Bulk) error {
		t := &liteTx{ctx: ctx}
		for i, q := range liteQueries {
			st, err := b.Prepare(q.text) // compiled once per handle
			if err != nil {
				return err
			}
			t.st[i] = st
		}
		return b.InTx(ctx, func(tx *db.BulkTx) error {
			t.tx = tx
			return fn(t)
		})
	})
}

// The statements of a decision, by their index in liteQueries.
const (
	stAWLClient = iota
	stAWLPair
	stTriplet
	stCountClient
	stCountPair
)

var liteQueries = [...]liteQuery{
	compactParams(liteAWLClient), compactParams(liteAWLPair), compactParams(liteTriplet),
	compactParams(liteCountClient), compactParams(liteCountPair),
}

// liteQuery is a statement with only the parameters it uses: binding one
// copies a text into C memory, and the auto-whitelist lookups use 4 and
// 6 of the 15.
type liteQuery struct {
	text string
	args []int // liteDecideArgs' index of its ?1, ?2, ...
}

// compactParams numbers the parameters q uses (?N, numbered as in
// liteDecideArgs) ?1, ?2, ... in their order. None of the statements has
// a '?' anywhere else.
func compactParams(q string) liteQuery {
	var used [len(liteArgs{}) + 1]bool
	for _, m := range liteParam.FindAllStringSubmatch(q, -1) {
		n, _ := strconv.Atoi(m[1])
		used[n] = true
	}
	var lq liteQuery
	renum := map[string]string{}
	for n, u := range used {
		if u {
			lq.args = append(lq.args, n-1)
			renum[fmt.Sprint(n)] = fmt.Sprint(len(lq.args))
		}
	}
	lq.text = liteParam.ReplaceAllStringFunc(q, func(p string) string { return "?" + renum[p[1:]] })
	return lq
}

var liteParam = regexp.MustCompile(`\?([0-9]+)`)

// bind binds statement i's parameters from args and returns it.
func (t *liteTx) bind(i int, args *liteArgs) *db.BulkStmt {
	st := t.st[i]
	for j, a := range liteQueries[i].args {
		if v := &args[a]; v.text {
			st.Text(j+1, v.s)
		} else {
			st.Int(j+1, v.n)
		}
	}
	return st
}

// exec runs statement i with its parameters from args.
func (t *liteTx) exec(i int, args *liteArgs) error { return t.tx.Exec(t.bind(i, args)) }

// Parameters of the statements below: ?1 client_key, ?2 sender,
// ?3 recipient, ?4 key_kind, ?5 client_net, ?6 client_addr, ?7 raw_sender,
// ?8 sender_domain, ?9 now, ?10 delay cutoff, ?11 retry window cutoff,
// ?12 max age cutoff, ?13 AWL count cutoff, ?14 AWL client passes,
// ?15 pair AWL on. Times are Unix seconds.
const (
	// The auto-whitelist lookups touch the row they find and report it
	// by the changed-row count, not RETURNING: SQLite runs RETURNING as a
	// trigger that fills an ephemeral table (https://www.sqlite.org/lang_returning.html),
	// which these lookups, mostly misses, would open on every decision.
	liteAWLClient = `UPDATE greylist_awl_client SET last_seen = ?9
	WHERE ?14 > 0 AND client_net = ?5 AND passes >= ?14 AND last_seen >= ?12`

	liteAWLPair = `UPDATE greylist_awl_pair SET last_seen = ?9, client_addr = ?6
	WHERE ?15 AND ?8 <> '' AND client_key = ?1 AND sender_domain = ?8 AND last_seen >= ?12`

	// A pending row first seen more than a minute after now (clockSlack)
	// is over too: the clock has stepped back since (an NTP step, a
	// resumed VM), and its delay would otherwise run until the clock is
	// back where it was.
	liteExpired = `((g.passed_at IS NULL AND (g.first_seen < ?11 OR g.first_seen > ?9 + 60))
		OR (g.passed_at IS NOT NULL AND g.last_seen < ?12))`

	liteTriplet = `INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net,
		client_addr, raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?9, NULL, 1, 0)
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = CASE WHEN ` + liteExpired + ` THEN ?9 ELSE g.first_seen END,
		passed_at = CASE WHEN ` + liteExpired + ` THEN NULL
			WHEN g.passed_at IS NOT NULL THEN g.passed_at
			WHEN g.first_seen <= ?10 THEN ?9 END,
		attempts = CASE WHEN ` + liteExpired + ` THEN 1 ELSE g.attempts + 1 END,
		passes = CASE WHEN ` + liteExpired + ` THEN 0
			WHEN g.passed_at IS NOT NULL OR g.first_seen <= ?10 THEN g.passes + 1
			ELSE g.passes END,
		last_seen = ?9, client_net = excluded.client_net, client_addr = excluded.client_addr,
		raw_sender = excluded.raw_sender
	RETURNING first_seen, passed_at, attempts, passes`

	liteCountClient = `INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	VALUES (?5, ?6, ?9, ?9, ?9, 1)
	ON CONFLICT (client_net) DO UPDATE SET
		passes = CASE WHEN a.last_seen < ?12 THEN 1 WHEN a.last_counted <= ?13 THEN a.passes + 1 ELSE a.passes END,
		last_counted = CASE WHEN a.last_seen < ?12 OR a.last_counted <= ?13 THEN ?9 ELSE a.last_counted END,
		first_seen = CASE WHEN a.last_seen < ?12 THEN ?9 ELSE a.first_seen END,
		last_seen = ?9, client_addr = ?6`

	liteCountPair = `INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	VALUES (?1, ?8, ?4, ?5, ?6, ?9, ?9)
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = CASE WHEN p.last_seen < ?12 THEN ?9 ELSE p.first_seen END,
		last_seen = ?9, client_net = ?5, client_addr = ?6`
)

// Decide records one attempt and returns the verdict, with the same
// statements in the same order as PostgreSQL's one statement.
func (s *SQLiteStore) Decide(ctx context.Context, now time.Time, cfg *Config, k Key) (o Outcome, err error) {
	args := liteDecideArgs(newCutoffs(now, cfg), cfg, k)
	err = s.inLiteTx(ctx, func(tx *liteTx) error {
		o, err = liteDecide(tx, &args, cfg)
		return err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("greylist: sqlite decide: %w", err)
	}
	return o, nil
}

// liteArg is one parameter of the statements above: a text or an
// integer (a time in Unix seconds, a count, a boolean as 0 or 1).
type liteArg struct {
	s    string
	n    int64
	text bool
}

// liteArgs are the parameters ?1 to ?15 of the statements above, in
// order; SQLiteStore and SQLiteBatchStore both send them.
type liteArgs [15]liteArg

// argSenderDomain is ?8's index in liteArgs.
const argSenderDomain = 7

func liteDecideArgs(c cutoffs, cfg *Config, k Key) liteArgs {
	text := func(s string) liteArg { return liteArg{s: s, text: true} }
	num := func(n int64) liteArg { return liteArg{n: n} }
	pair := int64(0)
	if cfg.AWLPair {
		pair = 1
	}
	return liteArgs{text(k.ClientKey), text(k.Sender), text(k.Recipient), text(k.Kind), text(k.Net.String()),
		text(db.InetText(k.Addr)), text(k.RawSender), text(k.SenderDomain), num(c.now.Unix()), num(c.delay.Unix()),
		num(c.window.Unix()), num(c.maxAge.Unix()), num(c.count.Unix()), num(int64(cfg.AWLClientPasses)), num(pair)}
}

func liteDecide(tx *liteTx, args *liteArgs, cfg *Config) (Outcome, error) {
	if err := tx.ctx.Err(); err != nil {
		return Outcome{}, err
	}
	if hit, err := tx.touched(stAWLClient, args); err != nil || hit {
		return Outcome{Verdict: VerdictAWLClient}, err
	}
	pairHit, err := tx.touched(stAWLPair, args)
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{Verdict: VerdictAWLPair}
	if !pairHit {
		if o, err = tx.tripletUpsert(args); err != nil {
			return Outcome{}, err
		}
	}
	if !o.Verdict.Passes() {
		return o, nil
	}
	if cfg.AWLClientPasses > 0 {
		if err := tx.exec(stCountClient, args); err != nil {
			return Outcome{}, err
		}
	}
	if !pairHit && cfg.AWLPair && args[argSenderDomain].s != "" {
		if err := tx.exec(stCountPair, args); err != nil {
			return Outcome{}, err
		}
	}
	return o, nil
}

// touched runs the UPDATE statement i and reports whether it changed a row.
func (t *liteTx) touched(i int, args *liteArgs) (bool, error) {
	n, err := t.tx.Changes(t.bind(i, args))
	return n > 0, err
}

func (t *liteTx) tripletUpsert(args *liteArgs) (Outcome, error) {
	var first, passed, attempts, passes sql.NullInt64
	if err := t.tx.Ints(t.bind(stTriplet, args), &first, &passed, &attempts, &passes); err != nil {
		return Outcome{}, err
	}
	var pt *time.Time
	if passed.Valid {
		t := time.Unix(passed.Int64, 0)
		pt = &t
	}
	return outcome(time.Unix(first.Int64, 0), pt, int(attempts.Int64), int(passes.Int64)), nil
}

// GC deletes expired rows in batches of short transactions, so the daemon's
// decisions wait one batch at most, whether they share the one connection
// (the daemon's own gc) or the file's lock (a gc command beside it:
// db.SQLiteDeleteBatches).
func (s *SQLiteStore) GC(ctx context.Context, now time.Time, cfg *Config, dryRun bool) (GCStats, error) {
	var st GCStats
	for _, t := range gcTargets(now, cfg, &st) {
		where := liteParams(t.where)
		var err error
		if dryRun {
			err = s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+t.table+" WHERE "+where, t.cutoff.Unix()).Scan(t.count)
		} else {
			err = s.gcDelete(ctx, t, where, cfg.GCBatch)
		}
		if err != nil {
			return st, fmt.Errorf("greylist: sqlite gc %s: %w", t.table, err)
		}
	}
	return st, nil
}

func (s *SQLiteStore) gcDelete(ctx context.Context, t gcTarget, where string, batch int) error {
	// Table and condition are constants of this package, never user data.
	q := "DELETE FROM " + t.table + " WHERE rowid IN (SELECT rowid FROM " + t.table + " WHERE " + where + " LIMIT ?2)"
	n, err := db.SQLiteDeleteBatches(ctx, int64(batch), func(ctx context.Context) (int64, error) {
		res, err := s.db.ExecContext(ctx, q, t.cutoff.Unix(), batch)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	*t.count += n
	return err
}

// liteParams turns the PostgreSQL "$1" of a shared condition into "?1".
func liteParams(where string) string {
	b := []byte(where)
	for i := range b {
		if b[i] == '$' {
			b[i] = '?'
		}
	}
	return string(b)
}

const litePeek = `SELECT
	EXISTS (SELECT 1 FROM greylist_awl_client WHERE ?1 > 0 AND client_net = ?2 AND passes >= ?1 AND last_seen >= ?3),
	EXISTS (SELECT 1 FROM greylist_awl_pair WHERE ?4 AND ?5 <> '' AND client_key = ?6 AND sender_domain = ?5 AND last_seen >= ?3),
	t.first_seen, t.last_seen, t.passed_at, coalesce(t.passes, 0)
FROM (SELECT 1) AS one
LEFT JOIN greylist_triplet t ON t.client_key = ?6 AND t.sender = ?7 AND t.recipient = ?8`

// Peek evaluates a decision without writing anything.
func (s *SQLiteStore) Peek(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error) {
	c := newCutoffs(now, cfg)
	var (
		p                   peekState
		first, last, passed sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, litePeek, cfg.AWLClientPasses, k.Net.String(), c.maxAge.Unix(), cfg.AWLPair,
		k.SenderDomain, k.ClientKey, k.Sender, k.Recipient).Scan(&p.awlClient, &p.awlPair, &first, &last, &passed, &p.passes)
	if err != nil {
		return Outcome{}, fmt.Errorf("greylist: sqlite peek: %w", err)
	}
	if first.Valid && last.Valid {
		p.found, p.firstSeen, p.lastSeen = true, time.Unix(first.Int64, 0), time.Unix(last.Int64, 0)
	}
	if passed.Valid {
		t := time.Unix(passed.Int64, 0)
		p.passedAt = &t
	}
	return p.verdict(c), nil
}
