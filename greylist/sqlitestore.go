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
// with BEGIN IMMEDIATE on the single connection (internal/db), so it is as
// atomic as PostgreSQL's one statement; its statements are local calls,
// not round trips. Parameters are numbered like the PostgreSQL ones.
type SQLiteStore struct {
	db    *sql.DB
	stmts *db.Stmts
}

// NewSQLiteStore returns a Store on a migrated database.
func NewSQLiteStore(d *sql.DB) *SQLiteStore { return &SQLiteStore{db: d, stmts: db.NewStmts(d)} }

// liteTx runs decisions' prepared statements in one transaction.
type liteTx struct {
	ctx   context.Context // the transaction's: checked before each decision
	run   context.Context // the statements': never cancelled (newLiteTx)
	tx    *sql.Tx
	stmts *liteStmts
	bound liteStmts // stmts bound to tx, as they are used
	args  []any     // the parameters of the statement running (pick)
}

// newLiteTx runs stmts in tx, begun on ctx. The statements themselves run
// on a context that is never cancelled: modernc.org/sqlite watches a
// cancellable one with a goroutine per statement, which cost more than
// the lookups themselves. A statement of a transaction begun with BEGIN
// IMMEDIATE holds the write lock already and never waits for another
// (https://www.sqlite.org/lang_transaction.html), so it ends in
// microseconds; ctx still ends the transaction (database/sql rolls it
// back), and liteDecide checks it before each decision.
func newLiteTx(ctx context.Context, tx *sql.Tx, stmts *liteStmts) *liteTx {
	return &liteTx{ctx: ctx, run: context.WithoutCancel(ctx), tx: tx, stmts: stmts}
}

// liteStmts are the statements of liteQueries, prepared.
type liteStmts [len(liteQueries)]*sql.Stmt

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
// costs the driver a conversion and, for text, a copy, and the
// auto-whitelist lookups use 4 and 6 of the 15.
type liteQuery struct {
	text string
	args []int // liteDecideArgs' index of its ?1, ?2, ...
}

// compactParams numbers the parameters q uses (?N, numbered as in
// liteDecideArgs) ?1, ?2, ... in their order. None of the statements has
// a '?' anywhere else.
func compactParams(q string) liteQuery {
	var used [16]bool
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

// prepared returns the decision's statements, compiled on first use
// (db.Stmts). Call it before the transaction begins.
func (s *SQLiteStore) prepared(ctx context.Context) (*liteStmts, error) {
	var p liteStmts
	for i, q := range liteQueries {
		st, err := s.stmts.Prepare(ctx, q.text)
		if err != nil {
			return nil, err
		}
		p[i] = st
	}
	return &p, nil
}

// stmt is statement i bound to the transaction: run on its connection
// without compiling it again (database/sql Tx.StmtContext); the
// transaction's end closes it.
func (t *liteTx) stmt(i int) *sql.Stmt {
	if t.bound[i] == nil {
		t.bound[i] = t.tx.StmtContext(t.run, t.stmts[i])
	}
	return t.bound[i]
}

// exec runs statement i with its parameters from args (liteDecideArgs).
func (t *liteTx) exec(i int, args []any) (sql.Result, error) {
	return t.stmt(i).ExecContext(t.run, t.pick(i, args)...)
}

// queryRow runs statement i with its parameters from args.
func (t *liteTx) queryRow(i int, args []any) *sql.Row {
	return t.stmt(i).QueryRowContext(t.run, t.pick(i, args)...)
}

// pick is statement i's parameters, in t.args: database/sql has copied
// them by the time the call returns, so the next statement reuses it.
func (t *liteTx) pick(i int, args []any) []any {
	t.args = t.args[:0]
	for _, a := range liteQueries[i].args {
		t.args = append(t.args, args[a])
	}
	return t.args
}

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
	stmts, err := s.prepared(ctx)
	if err == nil {
		err = db.InTx(ctx, s.db, func(tx *sql.Tx) error {
			o, err = liteDecide(newLiteTx(ctx, tx, stmts), args, cfg)
			return err
		})
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("greylist: sqlite decide: %w", err)
	}
	return o, nil
}

// liteDecideArgs are the parameters ?1 to ?15 of the statements above;
// SQLiteStore and SQLiteBatchStore both send them.
func liteDecideArgs(c cutoffs, cfg *Config, k Key) []any {
	return []any{k.ClientKey, k.Sender, k.Recipient, k.Kind, k.Net.String(), db.InetText(k.Addr),
		k.RawSender, k.SenderDomain, c.now.Unix(), c.delay.Unix(), c.window.Unix(), c.maxAge.Unix(),
		c.count.Unix(), cfg.AWLClientPasses, cfg.AWLPair}
}

func liteDecide(tx *liteTx, args []any, cfg *Config) (Outcome, error) {
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
		if _, err := tx.exec(stCountClient, args); err != nil {
			return Outcome{}, err
		}
	}
	if !pairHit && cfg.AWLPair && args[7] != "" {
		if _, err := tx.exec(stCountPair, args); err != nil {
			return Outcome{}, err
		}
	}
	return o, nil
}

// touched runs the UPDATE statement i and reports whether it changed a row.
func (t *liteTx) touched(i int, args []any) (bool, error) {
	res, err := t.exec(i, args)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *liteTx) tripletUpsert(args []any) (Outcome, error) {
	var (
		first, attempts, passes int64
		passed                  sql.NullInt64
	)
	if err := t.queryRow(stTriplet, args).Scan(&first, &passed, &attempts, &passes); err != nil {
		return Outcome{}, err
	}
	var pt *time.Time
	if passed.Valid {
		t := time.Unix(passed.Int64, 0)
		pt = &t
	}
	return outcome(time.Unix(first, 0), pt, int(attempts), int(passes)), nil
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
