package greylist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// A group decides as its decisions one after the other would: the set
// statement's first, then the rest. A random workload with few clients,
// senders and recipients (so triplets are retried early, pass, expire and
// auto-whitelist their clients and pairs, and groups hold the same
// triplet or client network twice) goes in groups to one database
// (sendGroup) and one statement per decision (pgDecide) to another, in
// that order; every outcome and, at the end, every row must agree.
func TestPGGroupMatchesOneByOne(t *testing.T) {
	one, set := dbtest.Open(t, db.Postgres), dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	seq, batch := NewPGStore(one.PG), &PGBatchStore{PGStore: NewPGStore(set.PG)}
	cfg := DefaultConfig()
	cfg.AWLClientPasses, cfg.AWLCountInterval = 3, 30*time.Minute
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[Verdict]int{}
	var prev []*request
	var split int
	for round := range 1000 {
		now = now.Add(time.Duration(rng.IntN(int(cfg.Delay*3/2/time.Second))) * time.Second)
		switch round % 331 {
		case 96, 193:
			now = now.Add(cfg.RetryWindow) // pending rounds expire
		case 330:
			now = now.Add(cfg.MaxAge) // passes and auto-whitelistings expire
		}
		group := randomGroup(rng, &cfg, now)
		if prev != nil && rng.IntN(3) == 0 {
			group[0].Arg.k = prev[rng.IntN(len(prev))].Arg.k // a retry, often early
		}
		prev = group
		order := pgLockOrder(group)
		got, err := batch.sendGroup(ctx, group, order, true)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		inSet, rest := pgSetSplit(group, order)
		if len(inSet) > 0 && len(rest) > 0 {
			split++
		}
		for _, i := range append(inSet, rest...) {
			r := group[i]
			want, err := seq.Decide(ctx, r.Arg.now, r.Arg.cfg, r.Arg.k)
			if err != nil {
				t.Fatal(err)
			}
			if got[i].Err != nil || got[i].Val != want {
				t.Fatalf("round %d, %s %s %s: group %+v (%v), one by one %+v", round, r.Arg.k.ClientKey, r.Arg.k.Sender, r.Arg.k.Recipient, got[i].Val, got[i].Err, want)
			}
			seen[want.Verdict]++
		}
	}
	if split < 100 || len(seen) != len(verdictNames) {
		t.Fatalf("%d groups split, verdicts %v: the workload tests too little", split, seen)
	}
	for _, table := range []string{"greylist_triplet", "greylist_awl_client", "greylist_awl_pair"} {
		if a, b := dumpTable(t, one, table), dumpTable(t, set, table); a != b {
			t.Errorf("%s differs:\none by one:\n%s\ngroups:\n%s", table, a, b)
		}
	}
}

// randomGroup is one to six decisions at about now among 24 client
// networks, 6 senders in 3 domains or the null sender, and 4 recipients.
func randomGroup(rng *rand.Rand, cfg *Config, now time.Time) []*request {
	group := make([]*request, 1+rng.IntN(6))
	for i := range group {
		addr := netip.AddrFrom4([4]byte{192, 0, byte(2 + rng.IntN(24)), 10})
		sender := fmt.Sprintf("u%d@d%d.example", rng.IntN(6), rng.IntN(3))
		if rng.IntN(5) == 0 {
			sender = "" // no pair auto-whitelist: passes become "known"
		}
		spf := ""
		if rng.IntN(4) == 0 {
			spf = "pool.example"
		}
		k := cfg.KeyFor(addr, sender, fmt.Sprintf("r%d@local.test", rng.IntN(4)), spf)
		group[i] = &request{Arg: decideArg{now: now.Add(time.Duration(rng.IntN(3)) * time.Second), cfg: cfg, k: k}}
	}
	return group
}

func dumpTable(t *testing.T, d *db.DB, table string) string {
	t.Helper()
	rows, err := d.PG.Query(dbtest.Context(t), "SELECT t::text FROM "+table+" t ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPGSetSplit(t *testing.T) {
	cfg := DefaultConfig()
	other := cfg
	other.Delay++
	at := func(ip, sender, rcpt string) *request {
		return &request{Arg: decideArg{cfg: &cfg, k: cfg.KeyFor(netip.MustParseAddr(ip), sender, rcpt, "")}}
	}
	bogus := at("192.0.2.9", "a@x.example", "r@y.example")
	bogus.Arg.k.Kind = "bogus"
	otherDurations := at("203.0.113.1", "b@z.example", "r@y.example")
	otherDurations.Arg.cfg = &other
	for _, c := range []struct {
		name  string
		group []*request
		set   int // how many of the group, from the first, the set takes
	}{
		{"distinct", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), at("198.51.100.1", "b@z.example", "r@y.example")}, 2},
		{"one triplet twice", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), at("192.0.2.2", "a@x.example", "r@y.example")}, 1},
		{"one client network", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), at("192.0.2.2", "b@z.example", "s@y.example")}, 1},
		{"one pair", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), at("192.0.2.1", "b@x.example", "s@y.example")}, 1},
		{"other durations", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), otherDurations}, 1},
		{"key kind the schema refuses", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), bogus}, 1},
		{"NUL", []*request{at("192.0.2.1", "a@x.example", "r@y.example"), at("192.0.2.9", "a\x00@x.example", "r@y.example")}, 1},
	} {
		inSet, rest := pgSetSplit(c.group, []int{0, 1})
		if len(inSet) != c.set || len(rest) != len(c.group)-c.set || inSet[0] != 0 {
			t.Errorf("%s: set %v, rest %v; want the first %d in the set", c.name, inSet, rest, c.set)
		}
	}
}

// Two decisions for one triplet in a group must run in arrival order
// (docs/PERFORMANCE.md: duplicates "resolved as if sequential"). The
// group runs the set statement first, then the rest; so a later duplicate
// must never be in the set while an earlier one is in the rest. A group
// spanning a reload holds decisions with two configurations.
func TestPGSetSplitKeepsDuplicatesInArrivalOrder(t *testing.T) {
	cfg := DefaultConfig()
	reloaded := cfg
	reloaded.Delay *= 2 // a SIGHUP changed greylist.delay while the group gathered
	at := func(c *Config, ip, sender, rcpt string) *request {
		return &request{Arg: decideArg{cfg: c, k: c.KeyFor(netip.MustParseAddr(ip), sender, rcpt, "")}}
	}
	group := []*request{
		at(&cfg, "192.0.2.1", "a@x.example", "r@y.example"),         // sorts first: its durations are the set's
		at(&reloaded, "198.51.100.1", "b@z.example", "r@y.example"), // first attempt of triplet T (old config)
		at(&cfg, "198.51.100.1", "b@z.example", "r@y.example"),      // its retry, arrived after it
	}
	order := pgLockOrder(group)
	inSet, rest := pgSetSplit(group, order)
	run := append(slices.Clone(inSet), rest...) // the order sendGroup runs them in
	if slices.Index(run, 1) > slices.Index(run, 2) {
		t.Fatalf("set %v, rest %v: decision 2 (the retry) runs before decision 1 (the first attempt) of the same triplet", inSet, rest)
	}
}

// The same group against PostgreSQL: the first attempt of triplet T must
// be "new" and its retry, which arrived after it, "early", as one after
// the other (PGStore) answers them.
func TestPGGroupAcrossReloadMatchesOneByOne(t *testing.T) {
	one, set := dbtest.Open(t, db.Postgres), dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	seq, batched := NewPGStore(one.PG), &PGBatchStore{PGStore: NewPGStore(set.PG)}
	cfg := DefaultConfig()
	reloaded := cfg
	reloaded.Delay *= 2
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(c *Config, ip, sender, rcpt string) *request {
		return &request{Arg: decideArg{now: now, cfg: c, k: c.KeyFor(netip.MustParseAddr(ip), sender, rcpt, "")}}
	}
	group := []*request{
		at(&cfg, "192.0.2.1", "a@x.example", "r@y.example"),
		at(&reloaded, "198.51.100.1", "b@z.example", "r@y.example"),
		at(&cfg, "198.51.100.1", "b@z.example", "r@y.example"),
	}
	got, err := batched.sendGroup(ctx, group, pgLockOrder(group), true)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range group { // arrival order
		want, err := seq.Decide(ctx, r.Arg.now, r.Arg.cfg, r.Arg.k)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Err != nil || got[i].Val.Verdict != want.Verdict {
			t.Errorf("decision %d (%s): group says %v, one after the other %v", i, r.Arg.k.Sender, got[i].Val.Verdict, want.Verdict)
		}
	}
}
