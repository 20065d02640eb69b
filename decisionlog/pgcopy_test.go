package decisionlog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// pgxSource is rows as pgx's own CopyFrom encodes them, value by value
// through its type map: the reference the hand-made encoding must match.
type pgxSource struct {
	rows []Row
	i    int
}

func (s *pgxSource) Next() bool { s.i++; return s.i <= len(s.rows) }
func (s *pgxSource) Err() error { return nil }

func (s *pgxSource) Values() ([]any, error) {
	r := &s.rows[s.i-1]
	var client any
	if r.Client.IsValid() {
		client = r.Client
	}
	return []any{r.Time, r.Host, client, r.ClientName, r.Helo, r.Sender, r.Recipient,
		r.Instance, r.QueueID, r.Check, r.Action, r.WouldAction, r.Verb,
		r.Reason, seconds(r), micros(r), r.Observe, r.Whitelist, r.Errors}, nil
}

// randomRow is a row with every column drawn at random, within what
// PostgreSQL can store as given: valid UTF-8 without NUL.
func randomRow(rng *rand.Rand, i int) Row {
	pick := func(ss ...string) string { return ss[rng.IntN(len(ss))] }
	text := func() string {
		return pick("", "mx1", "mail.example.org", "Grüße@bücher.example", "tab\there",
			"new\nline", `back\slash`, "quote\"'", strings.Repeat("x", rng.IntN(600)), "日本語", "\U0001F600")
	}
	addrs := []netip.Addr{{}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::"), netip.MustParseAddr("::ffff:198.51.100.7"),
		netip.MustParseAddr("fe80::1%eth0"),
		netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), 0, 1})}
	return Row{
		// Before and after 2000-01-01, timestamptz's epoch, with microseconds
		// and nanoseconds that COPY drops.
		Time:        time.Unix(rng.Int64N(2e9)-2e8, rng.Int64N(1e9)).UTC(),
		Host:        text(),
		Client:      addrs[rng.IntN(len(addrs))],
		ClientName:  text(),
		Helo:        text(),
		Sender:      text(),
		Recipient:   text(),
		Instance:    fmt.Sprintf("row%d", i),
		QueueID:     text(),
		Check:       text(),
		Action:      text(),
		WouldAction: text(),
		Verb:        pick(verbs[:]...),
		Reason:      text(),
		Delay:       time.Duration(rng.Int64N(int64(100 * time.Hour))),
		Duration:    time.Duration(rng.Int64N(int64(time.Hour))),
		Observe:     rng.IntN(2) == 1,
		Whitelist:   text(),
		Errors:      text(),
	}
}

// tableText is every row of table as text, in instance order.
func tableText(t *testing.T, ctx context.Context, d *db.DB, table string) []string {
	t.Helper()
	rows, err := d.PG.Query(ctx, "SELECT t::text FROM "+table+" t ORDER BY instance")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The binary COPY encoded here stores exactly what pgx's CopyFrom stores
// for the same rows: every column, NULL and IPv4, IPv6, IPv4-mapped and
// zoned addresses, times on both sides of PostgreSQL's epoch, text that
// COPY's text format would have to escape.
func TestCopyMatchesPgx(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	if _, err := d.PG.Exec(ctx, "CREATE TABLE decisions_ref (LIKE decisions INCLUDING ALL)"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([]Row, 700)
	for i := range rows {
		rows[i] = randomRow(rng, i)
	}
	if err := Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	n, err := d.PG.CopyFrom(ctx, pgx.Identifier{"decisions_ref"}, columns, &pgxSource{rows: rows})
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("pgx CopyFrom: %d rows, %v", n, err)
	}
	got, want := tableText(t, ctx, d, "decisions"), tableText(t, ctx, d, "decisions_ref")
	if len(got) != len(rows) || len(want) != len(rows) {
		t.Fatalf("%d rows encoded here, %d by pgx; want %d each", len(got), len(want), len(rows))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// A value PostgreSQL's text type cannot hold (a client's 8-bit HELO, a NUL)
// costs neither its row nor the rest of the batch: the bad bytes are
// stored as U+FFFD.
func TestCopyRepairsText(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	rows := make([]Row, 5)
	for i := range rows {
		rows[i] = FromDecision(decision(i), "mx1")
	}
	rows[1].Helo = "caf\xe9.example"
	rows[3].Sender = "a\x00b@example.net"
	if err := Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	var helo, sender string
	var n int
	err := d.PG.QueryRow(ctx, `SELECT count(*),
		(SELECT helo FROM decisions WHERE instance = 'inst1'),
		(SELECT sender FROM decisions WHERE instance = 'inst3') FROM decisions`).Scan(&n, &helo, &sender)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(rows) || helo != "caf\uFFFD.example" || sender != "a\uFFFDb@example.net" {
		t.Errorf("%d rows, helo %q, sender %q; want %d, %q, %q",
			n, helo, sender, len(rows), "caf\uFFFD.example", "a\uFFFDb@example.net")
	}
}

// docs/reporting.md: a text value PostgreSQL cannot hold "is stored with
// each bad byte as U+FFFD". A Latin-1 HELO of two 8-bit letters in a row
// ("Grüße", fc df) keeps a replacement character per byte.
func TestCopyRepairsEachBadByte(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	rows := []Row{FromDecision(decision(0), "mx1")}
	rows[0].Helo = "gr\xfc\xdfe.example"
	if err := Insert(ctx, d, rows); err != nil {
		t.Fatal(err)
	}
	var helo string
	if err := d.PG.QueryRow(ctx, `SELECT helo FROM decisions`).Scan(&helo); err != nil {
		t.Fatal(err)
	}
	if want := "gr\uFFFD\uFFFDe.example"; helo != want {
		t.Errorf("helo %q, want %q (one U+FFFD per bad byte)", helo, want)
	}
}
