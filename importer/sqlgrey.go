package importer

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// SQLgrey reads SQLgrey's tables from its database, PostgreSQL or SQLite
// (SQLgrey's MySQL: copy the three tables to either first). What they
// hold, from the sqlgrey script (create_*_table, smtpd_access_policy):
//
//   - connect (sender_name, sender_domain, src, rcpt, first_seen): pending
//     first attempts, with the sender as sent (lowercased) and "-undef-"
//     for the null sender. They become pending triplets.
//   - from_awl (sender_name, sender_domain, src, first_seen, last_seen):
//     a sender that passed from a client, for any recipient. mxpolicyd has
//     no per-sender auto-whitelist; a pass records the (client, sender
//     domain) pair instead (greylist.awl_pair), so each row becomes that
//     pair: what mxpolicyd would have recorded had it seen the pass.
//   - domain_awl (sender_domain, src, first_seen, last_seen): the pair
//     auto-whitelist itself.
//
// src is SQLgrey's client id (client_identifier, class_c, ipv6_smart): a
// full address, the first three octets of an IPv4 /24 ("192.0.2"), or the
// first four groups of an IPv6 /64. Times are `timestamp` columns written
// with NOW(): on PostgreSQL read in the session's time zone, as SQLgrey
// wrote them; on SQLite Unix seconds (sqlgrey's now() is Perl's time).
func SQLgrey(ctx context.Context, d *db.DB, opt Options) (greylist.ImportSet, Report, error) {
	src := db.Dialect[sqlgreySource](d.Kind(), pgSQLgrey{d.PG}, liteSQLgrey{d.SQL})
	c := newCollector(opt)
	conns, err := src.rows(ctx, sgConnect)
	if err != nil {
		return greylist.ImportSet{}, Report{}, fmt.Errorf("importer: sqlgrey connect table: %w", err)
	}
	for _, r := range conns {
		c.sqlgreyConnect(r)
	}
	for _, q := range []int{sgFromAWL, sgDomainAWL} {
		rows, err := src.rows(ctx, q)
		if err != nil {
			return greylist.ImportSet{}, Report{}, fmt.Errorf("importer: sqlgrey auto-whitelist: %w", err)
		}
		for _, r := range rows {
			c.sqlgreyPair(r)
		}
	}
	set, rep := c.result()
	return set, rep, nil
}

// sgRow is one row of any of the three tables, in the column order of the
// queries below.
type sgRow struct {
	senderName, senderDomain, src, rcpt string
	firstSeen, lastSeen                 time.Time
}

// The tables, in the order SQLgrey reads them.
const (
	sgConnect = iota
	sgFromAWL
	sgDomainAWL
)

// The queries return the same columns for each table, so one scan serves
// them: from_awl has no recipient, domain_awl no sender name, connect no
// last_seen (its first_seen stands in).
var (
	pgSGQueries = [...]string{
		sgConnect:   `SELECT sender_name, sender_domain, src, rcpt, first_seen::timestamptz, first_seen::timestamptz FROM connect`,
		sgFromAWL:   `SELECT sender_name, sender_domain, src, '', first_seen::timestamptz, last_seen::timestamptz FROM from_awl`,
		sgDomainAWL: `SELECT '', sender_domain, src, '', first_seen::timestamptz, last_seen::timestamptz FROM domain_awl`,
	}
	liteSGQueries = [...]string{
		sgConnect:   `SELECT sender_name, sender_domain, src, rcpt, first_seen, first_seen FROM connect`,
		sgFromAWL:   `SELECT sender_name, sender_domain, src, '', first_seen, last_seen FROM from_awl`,
		sgDomainAWL: `SELECT '', sender_domain, src, '', first_seen, last_seen FROM domain_awl`,
	}
)

// sqlgreySource reads SQLgrey's tables on one store kind.
type sqlgreySource interface {
	rows(ctx context.Context, table int) ([]sgRow, error)
}

type pgSQLgrey struct{ pool *pgxpool.Pool }

// rows casts SQLgrey's timestamp columns to timestamptz, which reads them
// in the session's TimeZone: the zone NOW() wrote them in.
func (p pgSQLgrey) rows(ctx context.Context, table int) ([]sgRow, error) {
	rows, err := p.pool.Query(ctx, pgSGQueries[table])
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (sgRow, error) {
		var x sgRow
		err := r.Scan(&x.senderName, &x.senderDomain, &x.src, &x.rcpt, &x.firstSeen, &x.lastSeen)
		return x, err
	})
}

type liteSQLgrey struct{ db *sql.DB }

func (l liteSQLgrey) rows(ctx context.Context, table int) ([]sgRow, error) {
	rows, err := l.db.QueryContext(ctx, liteSGQueries[table])
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sgRow
	for rows.Next() {
		var (
			x           sgRow
			first, last any
		)
		if err := rows.Scan(&x.senderName, &x.senderDomain, &x.src, &x.rcpt, &first, &last); err != nil {
			return nil, err
		}
		if x.firstSeen, err = liteTime(first); err == nil {
			x.lastSeen, err = liteTime(last)
		}
		if err != nil {
			return nil, fmt.Errorf("row %s %s@%s: %w", x.src, x.senderName, x.senderDomain, err)
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// liteTime reads a SQLgrey time from SQLite: Unix seconds, or a
// "YYYY-MM-DD HH:MM:SS" text (UTC) written by hand.
func liteTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case int64:
		return time.Unix(t, 0), nil
	case float64:
		return time.Unix(int64(t), 0), nil
	case time.Time:
		return t, nil
	case []byte:
		return liteTime(string(t))
	case string:
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return time.Unix(n, 0), nil
		}
		return time.Parse(time.DateTime, t)
	}
	return time.Time{}, fmt.Errorf("time %v (%T) is neither Unix seconds nor a date", v, v)
}

// sqlgreySrc parses SQLgrey's client id into an address and the size of
// the network it stands for: an IPv6 /64 is its first four groups; an
// address with "::" is a whole address, whatever its number of fields
// (SQLgrey keeps the address as Postfix sent it with greymethod full, and
// in smart mode for a client without a name).
func sqlgreySrc(src string) (netip.Addr, int, bool) {
	if strings.Contains(src, ":") {
		if strings.Count(src, ":") == 3 && !strings.Contains(src, "::") {
			a, err := netip.ParseAddr(src + "::")
			return a, 64, err == nil
		}
		a, err := netip.ParseAddr(src)
		return a, 128, err == nil
	}
	if strings.Count(src, ".") == 2 {
		a, err := netip.ParseAddr(src + ".0")
		return a, 24, err == nil
	}
	a, err := netip.ParseAddr(src)
	return a, 32, err == nil && a.Is4()
}

// sqlgreyUndef is SQLgrey's sender name and domain for the null sender.
const sqlgreyUndef = "-undef-"

func (c *collector) sqlgreyNet(src string) (netip.Prefix, netip.Addr, bool) {
	addr, bits, ok := sqlgreySrc(src)
	if !ok {
		c.rep.skip(SkipUnknownSrc)
		return netip.Prefix{}, netip.Addr{}, false
	}
	nw, ok := c.network(addr, bits)
	return nw, addr.Unmap(), ok
}

func (c *collector) sqlgreyConnect(r sgRow) {
	nw, addr, ok := c.sqlgreyNet(r.src)
	if !ok {
		return
	}
	raw := r.senderName + "@" + r.senderDomain
	if r.senderName == sqlgreyUndef && r.senderDomain == sqlgreyUndef {
		raw = ""
	}
	c.triplet(greylist.ImportTriplet{Net: nw, Addr: addr, Sender: greylist.Normalize(raw), RawSender: raw,
		Recipient: strings.ToLower(r.rcpt), FirstSeen: r.firstSeen, LastSeen: r.firstSeen})
}

func (c *collector) sqlgreyPair(r sgRow) {
	domain := strings.TrimSuffix(strings.ToLower(r.senderDomain), ".")
	if domain == sqlgreyUndef || domain == "" {
		c.rep.skip(SkipNullSender)
		return
	}
	nw, addr, ok := c.sqlgreyNet(r.src)
	if !ok {
		return
	}
	c.pair(greylist.ImportPair{Net: nw, Addr: addr, SenderDomain: domain, FirstSeen: r.firstSeen, LastSeen: r.lastSeen})
}
