package greylist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/internal/batch"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// PGBatchStore is the PostgreSQL Store for high rates: concurrent Decide
// calls are sent together, in one pgx batch: one pgDecideSet statement for
// the decisions of the group that share no row (pgSetSplit), then one
// pgDecide statement for each of the others. pgx sends a batch as one
// pipeline ending in a single Sync, so it is one round trip and, without
// BEGIN in it, one implicit transaction with one commit (pgx
// Conn.SendBatch; PostgreSQL docs, "Frontend/Backend Protocol", "Message
// Flow", "Pipelining"). The statements run in order, so two decisions for
// one triplet in a group resolve as if they came one after the other, and
// across groups and daemons the triplet's row lock still lets exactly one
// see "new". Each statement turns synchronous_commit off for its
// transaction, as in PGStore, so the one commit does not wait for the WAL
// flush. A group first takes the advisory locks of the rows it will touch
// (pgLockKeys), so that groups in flight at once, from any daemon, never
// deadlock.
//
// GC and Peek are PGStore's.
type PGBatchStore struct {
	*PGStore
	b *batch.Batcher[decideArg, Outcome]
	// resent, if set, is told why a group was sent a second time
	// (pgResend): a test's window on the deadlocks the server reported.
	resent func(error)
}

// NewPGBatchStore returns a batched Store on a migrated database and
// starts its gathering goroutine; Close stops it.
func NewPGBatchStore(pool *pgxpool.Pool, opts BatchOptions) *PGBatchStore {
	s := &PGBatchStore{PGStore: NewPGStore(pool)}
	s.b = newBatcher(opts.withDefaults(time.Millisecond, 4), s.flush)
	return s
}

// Decide records one attempt, in the next group, and returns the verdict.
func (s *PGBatchStore) Decide(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error) {
	return s.b.Do(ctx, decideArg{now, cfg, k})
}

// Close sends what is queued, waits for the groups in flight, and makes
// later Decide calls fail. It does not close the pool.
func (s *PGBatchStore) Close() { s.b.Close() }

// BatchStats reports the transactions sent so far.
func (s *PGBatchStore) BatchStats() BatchStats { return s.b.Stats() }

// flush sends the group, once more if the first attempt certainly
// committed nothing and failed for a reason a new attempt may not meet.
func (s *PGBatchStore) flush(ctx context.Context, group []*request) ([]result, error) {
	order := pgLockOrder(group)
	res, err := s.sendGroup(ctx, group, order, true)
	if err != nil && pgResend(err) && ctx.Err() == nil {
		if s.resent != nil {
			s.resent(err)
		}
		res, err = s.sendGroup(ctx, group, order, true)
	}
	var re *batch.RowError
	if errors.As(err, &re) && re.Row < 0 && ctx.Err() == nil {
		// The set statement failed on some row's values: one statement per
		// decision tells which (the failed transaction committed nothing).
		res, err = s.sendGroup(ctx, group, order, false)
	}
	if err != nil {
		if errors.As(err, &re) {
			re.Err = fmt.Errorf("greylist: postgres batch decide: %w", re.Err)
			return nil, re
		}
		return nil, fmt.Errorf("greylist: postgres batch decide: %w", err)
	}
	return res, nil
}

// pgLockOrder is the order the group's statements are queued in: sorted
// by triplet, keeping arrival order among duplicates, so a retry in the
// group follows its first attempt and pgSetSplit picks the same set
// whatever order the decisions arrived in. Row locks are held until the
// group commits; what keeps two groups in flight from deadlocking over
// them is the advisory locks the group takes first (pgLockKeys), since a
// statement's CTEs lock rows in an order of their own.
func pgLockOrder(group []*request) []int {
	order := make([]int, len(group))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ka, kb := &group[a].Arg.k, &group[b].Arg.k
		return cmp.Or(strings.Compare(ka.ClientKey, kb.ClientKey),
			strings.Compare(ka.Sender, kb.Sender), strings.Compare(ka.Recipient, kb.Recipient))
	})
	return order
}

// pgLockRows takes a group's advisory locks ($1, pgLockKeys) one after
// the other, in the array's order (PostgreSQL docs, "Advisory Locks";
// transaction-level locks are released at commit or rollback).
const pgLockRows = `SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) AS k`

// pgLockKeys are the advisory lock keys of the rows the group's
// statements may lock, ascending and without repeats. A decision's rows
// are its triplet and its (client key, sender domain) pair, both under
// its client key, and its client network's auto-whitelist row: a key for
// its client key and one for its network's, which for a network key
// (KindNet, "net:" and the network) are the same. Sorting the decisions
// of one group (pgLockOrder) is not enough: the set statement comes
// before the rest, and within one statement the order in which its CTEs
// lock rows is the plan's (PostgreSQL docs, WITH Queries, "Data-Modifying
// Statements in WITH": the sub-statements run concurrently, in an
// unpredictable order). Two groups from any daemons that would touch a
// common row first wait for each other on a key, taken by both in the
// same ascending order, which cannot deadlock; the server would otherwise
// find the deadlock only after deadlock_timeout (1 s by default), with
// every decision behind it waiting.
//
// The keys are FNV-1a hashes of the names, the same in every daemon; two
// rows that share a key only wait for each other. A group holds at most
// two keys a decision (one for network keys), in PostgreSQL's shared lock
// table, which has room for max_locks_per_transaction (64) times
// max_connections (100) by default (PostgreSQL docs, "Lock Management").
func pgLockKeys(group []*request) []int64 {
	keys := make([]int64, 0, 2*len(group))
	var b [64]byte
	for _, r := range group {
		k := &r.Arg.k
		keys = append(keys, lockKey([]byte(k.ClientKey)), lockKey(appendNetKey(b[:0], k.Net)))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// lockKey is the advisory lock key of a client key.
func lockKey(clientKey []byte) int64 {
	h := fnv.New64a()
	h.Write(clientKey)
	return int64(h.Sum64())
}

// sendGroup runs the group in one round trip and one transaction: with
// set, the decisions pgSetSplit picks as one pgDecideSet statement, then
// the others one pgDecide each, in lock order; without, every decision
// one pgDecide. The decisions of the set statement share no row, so they
// are decided as if one after the other, and the rest come after them.
// Outcomes are only returned once Close has read the Sync's answer, that
// is after the commit. A failing statement's error is a *batch.RowError
// naming its decision, or row -1 for the set statement.
func (s *PGBatchStore) sendGroup(ctx context.Context, group []*request, order []int, set bool) ([]result, error) {
	inSet, rest := []int(nil), order
	if set {
		inSet, rest = pgSetSplit(group, order)
	}
	pb := &pgx.Batch{}
	pb.Queue(pgLockRows, pgLockKeys(group))
	if len(inSet) > 0 {
		pb.Queue(pgDecideSet, pgDecideSetArgs(group, inSet)...)
	}
	for _, i := range rest {
		r := group[i]
		pb.Queue(pgDecide, pgDecideArgs(newCutoffs(r.Arg.now, r.Arg.cfg), r.Arg.cfg, r.Arg.k)...)
	}
	br := s.pool.SendBatch(ctx, pb)
	res := make([]result, len(group))
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, err
	}
	if len(inSet) > 0 {
		if err := scanSet(br, inSet, res); err != nil {
			_ = br.Close()
			return nil, pgStatementError(err, -1)
		}
	}
	for _, i := range rest {
		var row pgDecideRow
		if err := br.QueryRow().Scan(row.dest()...); err != nil {
			_ = br.Close()
			return nil, pgStatementError(err, i)
		}
		res[i].Val, res[i].Err = row.outcome()
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// scanSet reads pgDecideSet's rows, one per decision of inSet, in order.
func scanSet(br pgx.BatchResults, inSet []int, res []result) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	j := 0
	for ; rows.Next(); j++ {
		if j >= len(inSet) {
			return fmt.Errorf("set statement returned more than %d rows", len(inSet))
		}
		var row pgDecideRow
		if err := rows.Scan(row.dest()...); err != nil {
			return err
		}
		res[inSet[j]].Val, res[inSet[j]].Err = row.outcome()
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if j != len(inSet) {
		return fmt.Errorf("set statement returned %d rows for %d decisions", j, len(inSet))
	}
	return nil
}

// pgDecideSetArgs are pgDecideSet's parameters for the decisions inSet of
// group: the arrays $1 to $9, then the durations and the auto-whitelist
// settings, which pgSetSplit made the same for all of them.
func pgDecideSetArgs(group []*request, inSet []int) []any {
	cfg := group[inSet[0]].Arg.cfg
	n := len(inSet)
	var (
		clientKeys, senders, rcpts, kinds, raws, domains = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		nets  = make([]netip.Prefix, n)
		addrs = make([]netip.Addr, n)
		nows  = make([]time.Time, n)
	)
	for j, i := range inSet {
		k := &group[i].Arg.k
		clientKeys[j], senders[j], rcpts[j], kinds[j] = k.ClientKey, k.Sender, k.Recipient, k.Kind
		nets[j], addrs[j], raws[j], domains[j] = k.Net, k.Addr, k.RawSender, k.SenderDomain
		nows[j] = newCutoffs(group[i].Arg.now, cfg).now
	}
	return []any{clientKeys, senders, rcpts, kinds, nets, addrs, raws, domains, nows,
		pgInterval(cfg.Delay), pgInterval(cfg.RetryWindow), pgInterval(cfg.MaxAge), pgInterval(cfg.AWLCountInterval),
		cfg.AWLClientPasses, cfg.AWLPair}
}

// pgInterval writes d as an interval PostgreSQL parses exactly, to the
// microsecond (its resolution).
func pgInterval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// pgSetSplit divides order (the group in lock order) into the decisions
// one pgDecideSet statement may take and the rest, each in lock order.
// The set takes, in order, every decision that runs with the durations
// of the first, whose values the schema takes (db.Storable, a known key kind),
// and that shares no triplet, client network (when the client
// auto-whitelist counts) or (client key, sender domain) pair (when the
// pair auto-whitelist is on) with one already taken: so no two of them
// touch the same row. The rest (a retry of a triplet in the set, another
// message from one of its client networks, a decision made under other
// durations, across a reload) follow one statement each; what a decision
// in the rest touches is taken too, so a later decision on the same rows
// follows it rather than run before it in the set.
func pgSetSplit(group []*request, order []int) (inSet, rest []int) {
	cfg := group[order[0]].Arg.cfg
	triplets := make(map[[3]string]bool, len(order))
	nets := make(map[netip.Prefix]bool, len(order))
	pairs := make(map[[2]string]bool, len(order))
	for _, i := range order {
		k := &group[i].Arg.k
		t, p := [3]string{k.ClientKey, k.Sender, k.Recipient}, [2]string{k.ClientKey, k.SenderDomain}
		usesNet, usesPair := cfg.AWLClientPasses > 0, cfg.AWLPair && k.SenderDomain != ""
		if !sameDurations(group[i].Arg.cfg, cfg) || (k.Kind != KindNet && k.Kind != KindSPF) ||
			!db.Storable(k.ClientKey, k.Sender, k.Recipient, k.RawSender, k.SenderDomain) ||
			triplets[t] || (usesNet && nets[k.Net]) || (usesPair && pairs[p]) {
			rest = append(rest, i)
			triplets[t], nets[k.Net], pairs[p] = true, true, true
			continue
		}
		inSet = append(inSet, i)
		triplets[t], nets[k.Net], pairs[p] = true, usesNet, usesPair
	}
	return inSet, rest
}

// sameDurations reports whether a and b decide alike: pgDecideSet takes
// one set of durations for the whole group.
func sameDurations(a, b *Config) bool {
	return a == b || (a.Delay == b.Delay && a.RetryWindow == b.RetryWindow && a.MaxAge == b.MaxAge &&
		a.AWLCountInterval == b.AWLCountInterval && a.AWLClientPasses == b.AWLClientPasses && a.AWLPair == b.AWLPair)
}

// pgStatementError marks an error caused by request row's own values: a
// data exception (class 22, e.g. invalid UTF-8 in an address) or an
// integrity constraint violation (class 23). Any error aborts the implicit
// transaction, so the group committed nothing (PostgreSQL docs, protocol
// "Pipelining"; Appendix A, "PostgreSQL Error Codes").
func pgStatementError(err error, row int) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		return &batch.RowError{Row: row, Err: err}
	}
	return err
}

// pgResend reports whether a failed group certainly committed nothing and
// may succeed if sent again: pgx wrote nothing to the server (a dead
// pooled connection found before use: pgconn.SafeToRetry), or the server
// rolled the transaction back as a deadlock victim or serialization
// failure (class 40). A connection lost after the batch was written is not
// resent: the Sync may have committed it before the answer was lost.
func pgResend(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
