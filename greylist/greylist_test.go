package greylist_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// countingStore counts the decisions that reach the database.
type countingStore struct {
	greylist.Store
	n atomic.Int64
}

func (c *countingStore) Decide(ctx context.Context, now time.Time, cfg *greylist.Config, k greylist.Key) (greylist.Outcome, error) {
	c.n.Add(1)
	return c.Store.Decide(ctx, now, cfg, k)
}

func newCheck(t *testing.T, cfg greylist.Config) (*greylist.Checker, *countingStore) {
	t.Helper()
	cs := &countingStore{Store: greylist.NewStore(openDB(t, filepath.Join(t.TempDir(), "g.db")))}
	cfg.Hostname = "mx1.example.net"
	g, err := greylist.New(cfg, cs, greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return g, cs
}

func request(client, sender, rcpt string) *policy.Request {
	return &policy.Request{
		Request: "smtpd_access_policy", ProtocolState: "RCPT",
		ClientAddress: netip.MustParseAddr(client), ClientName: "mail.example.org",
		Sender: sender, Recipient: rcpt, Instance: "a1b2.c3d4.0",
	}
}

// run checks one request at start+at with the given facts.
func run(t *testing.T, g *greylist.Checker, at time.Duration, req *policy.Request, msg *policy.Message, f policy.Facts) policy.Result {
	t.Helper()
	if msg == nil {
		msg = policy.NewMessage(req.Instance)
	}
	st := &policy.State{Req: req, Msg: msg, Now: start.Add(at), Facts: f}
	res, err := g.Check(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeferTextAndPass(t *testing.T) {
	cfg := greylist.DefaultConfig()
	cfg.Text = "4.2.0 Greylisted for %d s, retry in %s seconds (%r, 100%%)"
	g, _ := newCheck(t, cfg)
	req := request("192.0.2.10", "alice@example.org", "Bob@Example.NET")
	res := run(t, g, 0, req, nil, policy.Facts{})
	want := policy.Action{Verb: policy.DeferIfPermit, Text: "4.2.0 Greylisted for 120 s, retry in 120 seconds (example.net, 100%)"}
	if res.Action != want || res.Reason != "new triplet" {
		t.Fatalf("first contact: %+v, want %v", res, want)
	}
	if err := res.Action.Validate(); err != nil {
		t.Fatal(err)
	}
	res = run(t, g, 90*time.Second+500*time.Millisecond, req, nil, policy.Facts{})
	if !strings.Contains(res.Action.Text, "retry in 30 seconds") || res.Reason != "early retry" {
		t.Fatalf("early retry: %+v", res)
	}
	res = run(t, g, 3*time.Minute, req, nil, policy.Facts{})
	if !res.Action.IsDunno() || res.Delay != 3*time.Minute || res.Reason != "passed after delay" {
		t.Fatalf("retry after the delay: %+v", res)
	}
}

// The first pass after a delay prepends one X-Greylist header per message,
// without the recipient; the other recipients of the message get none.
func TestHeaderOncePerMessage(t *testing.T) {
	g, _ := newCheck(t, greylist.DefaultConfig())
	eng := policy.NewEngine(policy.Options{Now: func() time.Time { return start.Add(5 * time.Minute) }},
		[]policy.Step{{Check: g, Timeout: 5 * time.Second}})
	for _, rcpt := range []string{"bob@example.net", "carol@example.net"} {
		run(t, g, 0, request("192.0.2.10", "alice@example.org", rcpt), nil, policy.Facts{})
	}
	msg := policy.NewMessage("a1b2.c3d4.0")
	ctx := context.Background()
	d := eng.Evaluate(ctx, request("192.0.2.10", "alice@example.org", "bob@example.net"), msg)
	want := "X-Greylist: delayed 300 seconds by mxpolicyd at mx1.example.net; Sun, 01 Mar 2026 10:05:00 +0000"
	if d.Action != (policy.Action{Verb: policy.Prepend, Text: want}) {
		t.Fatalf("first recipient: %v, want PREPEND %s", d.Action, want)
	}
	d = eng.Evaluate(ctx, request("192.0.2.10", "alice@example.org", "carol@example.net"), msg)
	if !d.Action.IsDunno() {
		t.Fatalf("second recipient of the same message: %v (%s), want DUNNO", d.Action, d.Reason)
	}

	cfg := greylist.DefaultConfig()
	cfg.Header = false
	g2, _ := newCheck(t, cfg)
	run(t, g2, 0, request("192.0.2.10", "alice@example.org", "bob@example.net"), nil, policy.Facts{})
	eng.SetSteps([]policy.Step{{Check: g2, Timeout: 5 * time.Second}})
	if d := eng.Evaluate(ctx, request("192.0.2.10", "alice@example.org", "bob@example.net"), nil); !d.Action.IsDunno() {
		t.Fatalf("header: false still prepends: %v", d.Action)
	}
}

// A known pass is answered from memory until cache_refresh, then from
// the database once, which refreshes last_seen.
func TestCacheSkipsDatabase(t *testing.T) {
	g, cs := newCheck(t, greylist.DefaultConfig())
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	run(t, g, 0, req, nil, policy.Facts{})
	run(t, g, 3*time.Minute, req, nil, policy.Facts{})
	before := cs.n.Load()
	for i := 0; i < 100; i++ {
		if res := run(t, g, 4*time.Minute+time.Duration(i)*time.Second, req, nil, policy.Facts{}); !res.Action.IsDunno() {
			t.Fatal(res)
		}
	}
	// The pair AWL recorded with the pass is cached too.
	other := request("192.0.2.10", "zed@example.org", "eve@example.net")
	if res := run(t, g, 5*time.Minute, other, nil, policy.Facts{}); !strings.HasSuffix(res.Reason, "(cached)") {
		t.Fatalf("pair after a pass: %+v, want a cached pass", res)
	}
	if n := cs.n.Load() - before; n != 0 {
		t.Fatalf("%d database decisions for a cached pass, want 0", n)
	}
	res := run(t, g, 3*time.Minute+time.Hour+time.Second, req, nil, policy.Facts{})
	if n := cs.n.Load() - before; n != 1 || !res.Action.IsDunno() || strings.HasSuffix(res.Reason, "(cached)") {
		t.Fatalf("after cache_refresh: %d decisions, %+v; want 1 and a pass from the database", n, res)
	}
}

func TestOnlySuspicious(t *testing.T) {
	cfg := greylist.DefaultConfig()
	cfg.OnlySuspicious = true
	g, cs := newCheck(t, cfg)
	clean := policy.Facts{SPF: "pass", SPFDomain: "example.org"}
	for _, tc := range []struct {
		name    string
		client  string
		f       policy.Facts
		unknown bool
		defer_  bool
	}{
		{"verified, SPF pass, unlisted", "192.0.2.1", clean, false, false},
		{"no SPF checked", "192.0.2.2", policy.Facts{}, false, false},
		{"DNS list score", "192.0.2.3", policy.Facts{SPF: "pass", SPFDomain: "example.org", DNSScore: 1}, false, true},
		{"SPF softfail", "192.0.2.4", policy.Facts{SPF: "softfail"}, false, true},
		{"SPF none", "192.0.2.5", policy.Facts{SPF: "none"}, false, true},
		{"SPF neutral", "192.0.2.6", policy.Facts{SPF: "neutral"}, false, true},
		{"no verified name", "192.0.2.7", clean, true, true},
	} {
		req := request(tc.client, "alice@"+tc.name[:2]+".example", "bob@example.net")
		if tc.unknown {
			req.ClientName = "unknown"
		}
		res := run(t, g, 0, req, nil, tc.f)
		if res.Action.IsDefer() != tc.defer_ {
			t.Errorf("%s: %+v, defer want %v", tc.name, res, tc.defer_)
		}
	}
	if n := cs.n.Load(); n != 5 {
		t.Errorf("%d database decisions, want 5 (only the suspicious ones)", n)
	}
}

func TestDNSAllowSkips(t *testing.T) {
	g, cs := newCheck(t, greylist.DefaultConfig())
	res := run(t, g, 0, request("192.0.2.1", "a@example.org", "b@example.net"), nil, policy.Facts{DNSAllow: true, DNSScore: -5})
	if !res.Action.IsDunno() || cs.n.Load() != 0 {
		t.Fatalf("DNS allowlisted client: %+v, %d decisions", res, cs.n.Load())
	}
}

// With pool_aware, a retry from another network of the same SPF domain
// passes; without, it is a new triplet.
func TestPoolAware(t *testing.T) {
	spf := policy.Facts{SPF: "pass", SPFDomain: "Example.ORG"}
	for _, pool := range []bool{true, false} {
		cfg := greylist.DefaultConfig()
		cfg.PoolAware = pool
		g, _ := newCheck(t, cfg)
		run(t, g, 0, request("40.107.22.1", "alice@example.org", "bob@example.net"), nil, spf)
		res := run(t, g, 5*time.Minute, request("52.100.9.33", "alice@example.org", "bob@example.net"), nil, spf)
		if res.Action.IsDunno() != pool {
			t.Errorf("pool_aware=%v: retry from another network: %+v", pool, res)
		}
	}
	k := greylist.DefaultConfig().KeyFor(netip.MustParseAddr("::ffff:192.0.2.77"), "A@B.example", "C@D.example", "")
	if k.ClientKey != "net:192.0.2.0/24" || k.Addr.String() != "192.0.2.77" || k.Sender != "a@b.example" || k.Recipient != "c@d.example" {
		t.Errorf("KeyFor = %+v", k)
	}
}

// The PostgreSQL row records the raw client address and the key kind, so
// a pool-keyed pass stays auditable.
func TestPostgresRowIsAuditable(t *testing.T) {
	d := openDB(t, pgtest.New(t))
	cfg := greylist.DefaultConfig()
	g, err := greylist.New(cfg, greylist.NewStore(d), greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spf := policy.Facts{SPF: "pass", SPFDomain: "example.org"}
	run(t, g, 0, request("40.107.22.1", "prvs=0123abcdef=alice@example.org", "bob@example.net"), nil, spf)
	var kind, addr, netw, raw, sender string
	err = d.PG.QueryRow(context.Background(), `SELECT key_kind, host(client_addr), client_net::text, raw_sender, sender
		FROM greylist_triplet WHERE client_key = 'spf:example.org'`).Scan(&kind, &addr, &netw, &raw, &sender)
	if err != nil {
		t.Fatal(err)
	}
	if kind != "spf" || addr != "40.107.22.1" || netw != "40.107.22.0/24" || raw != "prvs=0123abcdef=alice@example.org" || sender != "alice@example.org" {
		t.Fatalf("row: kind %s addr %s net %s raw %s sender %s", kind, addr, netw, raw, sender)
	}
}

// A database that cannot be reached makes Check return a temporary error,
// and the engine answers the step's on_error (DUNNO) within its budget.
func TestStoreDownFailsOpen(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://mx@127.0.0.1:1/mx?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	obs := &storeObserver{}
	g, err := greylist.New(greylist.DefaultConfig(), greylist.NewPGStore(pool), greylist.Options{Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	_, err = g.Check(context.Background(), &policy.State{Req: req, Msg: policy.NewMessage("x"), Now: start})
	if err == nil || !db.IsTemporary(err) || !strings.HasPrefix(err.Error(), "greylist:") {
		t.Fatalf("Check with the database down: %v (temporary %v)", err, db.IsTemporary(err))
	}
	if k := policy.KindOf(err); k != policy.ErrorTemporary && k != policy.ErrorTimeout {
		t.Errorf("error kind %s, want temporary (or timeout)", k)
	}
	if len(obs.ops) != 1 || obs.ops[0] != greylist.OpDecide || obs.errs != 1 {
		t.Errorf("observed store ops %v with %d errors, want one failed %s", obs.ops, obs.errs, greylist.OpDecide)
	}
	eng := policy.NewEngine(policy.Options{Budget: 3 * time.Second},
		[]policy.Step{{Check: g, Timeout: 2 * time.Second, OnError: policy.DunnoAction}})
	d := eng.Evaluate(context.Background(), req, nil)
	if !d.Action.IsDunno() || len(d.Errors) != 1 {
		t.Fatalf("engine: %v, errors %v", d.Action, d.Errors)
	}
}

// After the server drops every connection (a restart), the pool
// reconnects by itself: at most one decision fails, temporarily.
func TestPostgresReconnects(t *testing.T) {
	dsn := pgtest.New(t)
	d := openDB(t, dsn)
	g, err := greylist.New(greylist.DefaultConfig(), greylist.NewStore(d), greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	run(t, g, 0, req, nil, policy.Facts{})
	admin := openDB(t, dsn)
	_, err = admin.PG.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	failures := 0
	for i := 0; i < 3; i++ {
		st := &policy.State{Req: req, Msg: policy.NewMessage("x"), Now: start.Add(time.Minute)}
		res, err := g.Check(context.Background(), st)
		if err != nil {
			if !db.IsTemporary(err) {
				t.Fatalf("after a server-side disconnect: permanent error %v", err)
			}
			failures++
			continue
		}
		if res.Reason != "early retry" {
			t.Fatalf("after reconnect: %+v, want the early retry the database remembers", res)
		}
		break
	}
	if failures > 1 {
		t.Fatalf("%d consecutive failures after a disconnect", failures)
	}
}

// The read-only check answers what the real one would, and writes nothing.
func TestReadOnly(t *testing.T) {
	g, cs := newCheck(t, greylist.DefaultConfig())
	ro, err := greylist.NewReadOnly(greylist.DefaultConfig(), cs.Store, greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	for i := 0; i < 3; i++ {
		if res := run(t, ro, 0, req, nil, policy.Facts{}); res.Reason != "new triplet" {
			t.Fatalf("read-only first look %d: %+v", i, res)
		}
	}
	run(t, g, 0, req, nil, policy.Facts{})
	if res := run(t, ro, time.Minute, req, nil, policy.Facts{}); res.Reason != "early retry" {
		t.Fatalf("read-only after one real attempt: %+v", res)
	}
	if res := run(t, ro, 3*time.Minute, req, nil, policy.Facts{}); res.Reason != "passed after delay" {
		t.Fatalf("read-only after the delay: %+v", res)
	}
	// Still pending in the database: the read-only pass was not recorded.
	if res := run(t, g, time.Minute+30*time.Second, req, nil, policy.Facts{}); res.Reason != "early retry" {
		t.Fatalf("real check after read-only ones: %+v", res)
	}
}

// storeObserver records what the check reports of its store calls.
type storeObserver struct {
	ops  []string
	errs int
}

func (o *storeObserver) StoreOp(op string, _ time.Duration, err error) {
	o.ops = append(o.ops, op)
	if err != nil {
		o.errs++
	}
}

// Quick answers what the cache knows, as Check would, without the store;
// a triplet the cache does not know is left to Check, with nothing
// written to the message.
func TestQuick(t *testing.T) {
	g, cs := newCheck(t, greylist.DefaultConfig())
	req := request("192.0.2.10", "alice@example.org", "bob@example.net")
	msg := policy.NewMessage(req.Instance)
	st := &policy.State{Req: req, Msg: msg, Now: start}
	if res, ok := g.Quick(st); ok {
		t.Fatalf("unknown triplet answered from memory: %+v", res)
	}
	if cs.n.Load() != 0 {
		t.Fatalf("Quick asked the store")
	}
	run(t, g, 0, req, nil, policy.Facts{})
	run(t, g, 3*time.Minute, req, nil, policy.Facts{})
	before := cs.n.Load()
	st = &policy.State{Req: req, Msg: policy.NewMessage("next.0"), Now: start.Add(4 * time.Minute)}
	res, ok := g.Quick(st)
	if !ok || !res.Action.IsDunno() || !strings.HasSuffix(res.Reason, "(cached)") || cs.n.Load() != before {
		t.Fatalf("cached pass: %+v, %v, %d store calls; want a pass from memory", res, ok, cs.n.Load()-before)
	}
	exempt := request("192.0.2.10", "alice@example.org", "bob@example.net")
	exempt.ClientAddress = netip.Addr{}
	if res, ok := g.Quick(&policy.State{Req: exempt, Msg: msg, Now: start}); !ok || res.Reason != "no client address" {
		t.Fatalf("exempt request: %+v, %v", res, ok)
	}
}
