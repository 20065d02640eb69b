package greylist

import (
	"context"
	"database/sql"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// liteAdmin is Admin on SQLite: the same statements as pgAdmin's, times as
// Unix seconds and networks as text.
type liteAdmin struct{ db *sql.DB }

const liteMatch = `(?1 = '' OR client_key = ?1) AND (?2 = '' OR sender = ?2) AND (?3 = '' OR recipient = ?3)`

const (
	liteList = `SELECT client_key, sender, recipient, raw_sender, client_addr, first_seen, last_seen,
		passed_at, attempts, passes
	FROM greylist_triplet
	WHERE ` + liteMatch + `
		AND (?4 = '' OR (?4 = 'pending') = (passed_at IS NULL))
		AND (?5 IS NULL OR first_seen < ?5) AND (?6 IS NULL OR first_seen >= ?6)
	ORDER BY first_seen DESC, client_key, sender, recipient
	LIMIT ?7`

	liteRelease = `UPDATE greylist_triplet SET passed_at = ?4, last_seen = ?4, passes = 0
	WHERE passed_at IS NULL AND ` + liteMatch

	liteForgetTriplets = `DELETE FROM greylist_triplet WHERE ` + liteMatch
	liteForgetPairs    = `DELETE FROM greylist_awl_pair
	WHERE ?3 OR ((?1 <> '' OR ?2 <> '') AND (?1 = '' OR client_key = ?1) AND (?2 = '' OR sender_domain = ?2))`
	liteForgetClients = `DELETE FROM greylist_awl_client WHERE ?2 OR client_net = ?1`

	liteBumpVersion = `UPDATE greylist_version SET version = version + 1`
	liteVersion     = `SELECT version FROM greylist_version`
)

func liteSelArgs(s selection) []any { return []any{s.clientKey, s.sender, s.recipient} }

func unix(t time.Time) any { return t.Unix() }

func (l liteAdmin) list(ctx context.Context, s selection, f Filter, limit int) ([]Row, error) {
	args := append(liteSelArgs(s), string(f.State), optTime(f.OlderThan, unix), optTime(f.NewerThan, unix), limit)
	rows, err := l.db.QueryContext(ctx, liteList, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var (
			x           Row
			first, last int64
			passed      sql.NullInt64
		)
		if err := rows.Scan(&x.ClientKey, &x.Sender, &x.Recipient, &x.RawSender, &x.ClientAddr, &first, &last,
			&passed, &x.Attempts, &x.Passes); err != nil {
			return nil, err
		}
		x.FirstSeen, x.LastSeen = time.Unix(first, 0), time.Unix(last, 0)
		if passed.Valid {
			t := time.Unix(passed.Int64, 0)
			x.PassedAt = &t
		}
		x.State = rowState(x.PassedAt)
		out = append(out, x)
	}
	return out, rows.Err()
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (l liteAdmin) release(ctx context.Context, s selection, now time.Time) (int64, error) {
	var n int64
	err := db.InTx(ctx, l.db, func(tx *sql.Tx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, liteRelease, append(liteSelArgs(s), now.Unix())...))
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, liteBumpVersion)
		return err
	})
	return n, err
}

func (l liteAdmin) forget(ctx context.Context, s selection) (ForgetResult, error) {
	var r ForgetResult
	err := db.InTx(ctx, l.db, func(tx *sql.Tx) error {
		var err error
		if r.Triplets, err = affected(tx.ExecContext(ctx, liteForgetTriplets, liteSelArgs(s)...)); err != nil {
			return err
		}
		if r.Pairs, err = affected(tx.ExecContext(ctx, liteForgetPairs, s.clientKey, s.senderDomain, s.all)); err != nil {
			return err
		}
		if s.net.IsValid() || s.all {
			nw := ""
			if s.net.IsValid() {
				nw = s.net.String()
			}
			if r.AWLClients, err = affected(tx.ExecContext(ctx, liteForgetClients, nw, s.all)); err != nil {
				return err
			}
		}
		if r == (ForgetResult{}) {
			return nil
		}
		_, err = tx.ExecContext(ctx, liteBumpVersion)
		return err
	})
	return r, err
}

func (l liteAdmin) version(ctx context.Context) (int64, error) {
	var v int64
	err := l.db.QueryRowContext(ctx, liteVersion).Scan(&v)
	return v, err
}

const (
	liteImportTriplet = `INSERT INTO greylist_triplet AS g (client_key, sender, recipient, key_kind, client_net,
		client_addr, raw_sender, first_seen, last_seen, passed_at, attempts, passes)
	VALUES (?1, ?2, ?3, 'net', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
	ON CONFLICT (client_key, sender, recipient) DO UPDATE SET
		first_seen = excluded.first_seen, last_seen = max(g.last_seen, excluded.last_seen),
		passed_at = excluded.passed_at, attempts = max(g.attempts, excluded.attempts), passes = excluded.passes
	WHERE g.passed_at IS NULL AND (excluded.passed_at IS NOT NULL OR excluded.first_seen < g.first_seen)`

	liteImportClient = `INSERT INTO greylist_awl_client AS a (client_net, client_addr, first_seen, last_seen, last_counted, passes)
	VALUES (?1, ?2, ?3, ?4, ?4, ?5)
	ON CONFLICT (client_net) DO UPDATE SET passes = excluded.passes,
		first_seen = min(a.first_seen, excluded.first_seen), last_seen = max(a.last_seen, excluded.last_seen)
	WHERE excluded.passes > a.passes`

	liteImportPair = `INSERT INTO greylist_awl_pair AS p (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
	VALUES (?1, ?2, 'net', ?3, ?4, ?5, ?6)
	ON CONFLICT (client_key, sender_domain) DO UPDATE SET
		first_seen = min(p.first_seen, excluded.first_seen), last_seen = max(p.last_seen, excluded.last_seen)
	WHERE excluded.first_seen < p.first_seen OR excluded.last_seen > p.last_seen`
)

func (l liteAdmin) load(ctx context.Context, set ImportSet) (ImportResult, error) {
	var r ImportResult
	err := db.InTx(ctx, l.db, func(tx *sql.Tx) error {
		r = ImportResult{}
		for _, t := range set.Triplets {
			attempts, passes := importPassCounts(t)
			var passed any
			if !t.PassedAt.IsZero() {
				passed = t.PassedAt.Unix()
			}
			n, err := affected(tx.ExecContext(ctx, liteImportTriplet, netKey(t.Net), t.Sender, t.Recipient,
				t.Net.String(), db.InetText(t.Addr), t.RawSender, t.FirstSeen.Unix(), t.LastSeen.Unix(), passed, attempts, passes))
			if err != nil {
				return err
			}
			r.Triplets += n
		}
		for _, c := range set.Clients {
			n, err := affected(tx.ExecContext(ctx, liteImportClient, c.Net.String(), db.InetText(c.Addr),
				c.FirstSeen.Unix(), c.LastSeen.Unix(), c.Passes))
			if err != nil {
				return err
			}
			r.Clients += n
		}
		for _, p := range set.Pairs {
			n, err := affected(tx.ExecContext(ctx, liteImportPair, netKey(p.Net), p.SenderDomain, p.Net.String(),
				db.InetText(p.Addr), p.FirstSeen.Unix(), p.LastSeen.Unix()))
			if err != nil {
				return err
			}
			r.Pairs += n
		}
		return nil
	})
	return r, err
}
