package spf_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

// cachingChecker is newChecker with heloZones, a record that expands the
// sender's local part, and a clock the test moves.
func cachingChecker(t *testing.T) (*spf.Checker, *clocktest.Clock, func(string, uint16) int) {
	t.Helper()
	c, srv := newChecker(t, nil)
	srv.Add(heloZones...)
	srv.Add(`users.test. 300 IN TXT "v=spf1 exists:%{l}.ok.%{d} -all"`,
		"alice.ok.users.test. 300 IN A 127.0.0.2")
	clk := clocktest.New(time.Unix(1700000000, 0))
	spf.SetClock(c, clk.Now)
	return c, clk, srv.Queries
}

// check runs one new message through c and returns its state.
func check(t *testing.T, c *spf.Checker, client, sender, helo string) (*policy.State, policy.Result, error) {
	t.Helper()
	st := state(client, sender, helo, "i", policy.NewMessage("i"))
	res, err := c.Check(context.Background(), st)
	return st, res, err
}

// TestVerdictReused: later messages from one client and sender domain
// reuse the verdict, pool-probe included, for its life and not after.
func TestVerdictReused(t *testing.T) {
	c, clk, queries := cachingChecker(t)
	for i, step := range []time.Duration{0, 10 * time.Second, 19 * time.Second} {
		clk.Advance(step)
		st, res, err := check(t, c, "192.0.2.1", "a@pass.test", "h.test")
		if err != nil || st.Facts.SPF != "pass" || st.Facts.SPFDomain != "pass.test" || !res.Action.IsDunno() {
			t.Fatalf("message %d: %s/%q %v %v", i, st.Facts.SPF, st.Facts.SPFDomain, res.Action, err)
		}
		if n := queries("pass.test", dns.TypeTXT); n != 1 {
			t.Fatalf("message %d at +%s: %d TXT queries, want the first one only", i, step, n)
		}
	}
	// A policy passing anyone keeps vouching for no one from the cache.
	for range 2 {
		if st, _, _ := check(t, c, "192.0.2.99", "b@all.test", "h.test"); st.Facts.SPF != "pass" || st.Facts.SPFDomain != "" {
			t.Fatalf("all.test: %s/%q, want a pass vouching for no pool", st.Facts.SPF, st.Facts.SPFDomain)
		}
	}
	if n := queries("all.test", dns.TypeTXT); n != 1 {
		t.Fatalf("all.test: %d TXT queries, want 1", n)
	}
	clk.Advance(2 * time.Second) // 31s after the first message: past its life
	check(t, c, "192.0.2.1", "a@pass.test", "h.test")
	if n := queries("pass.test", dns.TypeTXT); n != 2 {
		t.Fatalf("after its life: %d TXT queries, want a new evaluation", n)
	}
}

// TestVerdictNotShared: another client address, HELO name or sender
// domain is evaluated anew; so is another sender when a record expands
// the local part (%{l}), but not otherwise.
func TestVerdictNotShared(t *testing.T) {
	c, _, queries := cachingChecker(t)
	for _, m := range []struct{ client, sender, helo string }{
		{"192.0.2.1", "a@pass.test", "h.test"},
		{"192.0.2.1", "b@pass.test", "h.test"}, // same domain: reused
		{"192.0.2.2", "a@pass.test", "h.test"},
		{"192.0.2.1", "a@pass.test", "other.test"},
	} {
		check(t, c, m.client, m.sender, m.helo)
	}
	if n := queries("pass.test", dns.TypeTXT); n != 3 {
		t.Errorf("pass.test: %d TXT queries, want 3 (two clients, two HELO names)", n)
	}
	check(t, c, "192.0.2.1", "a@soft.test", "h.test")
	if n := queries("soft.test", dns.TypeTXT); n != 1 {
		t.Errorf("soft.test: %d TXT queries, want its own evaluation", n)
	}
	for sender, want := range map[string]spf.Result{"alice@users.test": "pass", "bob@users.test": "fail"} {
		for range 2 {
			if st, _, _ := check(t, c, "192.0.2.1", sender, "h.test"); st.Facts.SPF != want {
				t.Errorf("%s: %s, want %s", sender, st.Facts.SPF, want)
			}
		}
	}
	if n := queries("users.test", dns.TypeTXT); n != 2 {
		t.Errorf("users.test: %d TXT queries, want one per sender", n)
	}
}

// TestVerdictExplanation: a fail from the cache is explained for its own
// message: the domain's exp= names this sender.
func TestVerdictExplanation(t *testing.T) {
	c, _, queries := cachingChecker(t)
	for _, local := range []string{"a", "b"} {
		_, res, _ := check(t, c, "192.0.2.99", local+"@expl.test", "h.test")
		want := "550 5.7.23 expl.test explains: 192.0.2.99 may not send for expl.test; see https://expl.test/spf?s=" + local + "%40expl.test"
		if res.Action.String() != want {
			t.Errorf("%s: got %q, want %q", local, res.Action, want)
		}
	}
	if a, b := queries("expl.test", dns.TypeTXT), queries("why.expl.test", dns.TypeTXT); a != 1 || b != 1 {
		t.Errorf("%d and %d TXT queries for the record and its explanation, want 1 each", a, b)
	}
}

// TestVerdictNotCached: a temperror (the sender's DNS failed) and an
// evaluation our resolver did not answer are evaluated again next time.
func TestVerdictNotCached(t *testing.T) {
	c, srv := newChecker(t, nil)
	for range 2 {
		st, _, _ := check(t, c, "192.0.2.99", "a@broken.test", "h.test")
		if st.Facts.SPF != "temperror" {
			t.Fatalf("broken.test: %s, want temperror", st.Facts.SPF)
		}
	}
	if n := srv.Queries("servfail.test", dns.TypeTXT); n != 2 {
		t.Errorf("temperror: %d TXT queries for the failing name, want one per message", n)
	}
	if _, _, err := check(t, c, "192.0.2.99", "a@slow.test", "h.test"); !errors.Is(err, spf.ErrResolver) {
		t.Fatalf("slow.test: %v, want ErrResolver", err)
	}
	srv.SetDelay("slowhost.test", 0)
	if st, _, err := check(t, c, "192.0.2.99", "a@slow.test", "h.test"); err != nil || st.Facts.SPF != "fail" {
		t.Fatalf("slow.test answered: %s %v, want a new evaluation's fail", st.Facts.SPF, err)
	}
}

// TestQuick: a message whose HELO and MAIL FROM verdicts are cached is
// answered from memory with what Check gives it, its header included, and
// a later recipient reuses its message's outcome; a verdict not cached, or
// a fail (explained anew per message), is left to Check, with nothing
// written.
func TestQuick(t *testing.T) {
	c, _, queries := cachingChecker(t)
	// header is the PREPEND the message has queued: what an engine with no
	// step of its own answers.
	header := func(st *policy.State) string {
		return policy.NewEngine(policy.Options{}, nil).Evaluate(context.Background(), st.Req, st.Msg).Action.String()
	}
	declines := func(st *policy.State) bool {
		res, ok := c.Quick(st)
		if ok {
			t.Errorf("%s from %s answered from memory: %+v", st.Req.Sender, st.Req.ClientAddress, res)
		} else if st.Facts.SPF != "" || header(st) != "DUNNO" {
			t.Errorf("Quick declined but wrote facts %+v or a header", st.Facts)
		}
		return !ok
	}
	declines(state("192.0.2.1", "a@pass.test", "h.test", "i", policy.NewMessage("i")))
	first, want, err := check(t, c, "192.0.2.1", "a@pass.test", "h.test")
	if err != nil {
		t.Fatal(err)
	}
	txt := queries("pass.test", dns.TypeTXT)
	st := state("192.0.2.1", "a@pass.test", "h.test", "j", policy.NewMessage("j"))
	res, ok := c.Quick(st)
	got, wantHeader := header(st), header(first)
	if !strings.HasPrefix(wantHeader, "PREPEND Received-SPF: pass") {
		t.Fatalf("Check queued %q, want the Received-SPF header", wantHeader)
	}
	if !ok || res != want || st.Facts.SPF != first.Facts.SPF || st.Facts.SPFDomain != first.Facts.SPFDomain || got != wantHeader {
		t.Fatalf("cached verdict: %+v %v, facts %+v, %s; want Check's %+v, %+v, %s", res, ok, st.Facts, got, want, first.Facts, wantHeader)
	}
	if n := queries("pass.test", dns.TypeTXT); n != txt {
		t.Errorf("Quick asked %d TXT queries", n-txt)
	}
	next := state("192.0.2.1", "a@pass.test", "h.test", "j", st.Msg) // the message's next recipient
	if res, ok := c.Quick(next); !ok || res != want {
		t.Errorf("next recipient: %+v %v, want the message's outcome", res, ok)
	}
	check(t, c, "192.0.2.99", "a@expl.test", "h.test") // a fail, cached
	declines(state("192.0.2.99", "a@expl.test", "h.test", "k", policy.NewMessage("k")))
}

// TestExplanationTime: %{t} in a domain's explanation is the request's
// time (RFC 7208 §7.3), for a verdict reused from the cache too.
func TestExplanationTime(t *testing.T) {
	c, srv := newChecker(t, nil)
	srv.Add(`texp.test. 300 IN TXT "v=spf1 -all exp=why.texp.test"`, `why.texp.test. 300 IN TXT "refused at %{t}"`)
	for _, at := range []int64{1700000000, 1700000010} { // the second reuses the first's verdict
		st := state("192.0.2.99", "a@texp.test", "h.test", fmt.Sprint(at), nil)
		st.Now = time.Unix(at, 0)
		res, err := c.Check(context.Background(), st)
		if want := fmt.Sprintf("550 5.7.23 texp.test explains: refused at %d", at); err != nil || res.Action.String() != want {
			t.Errorf("at %d: %q, %v; want %q", at, res.Action, err, want)
		}
	}
}

// TestQuickOutcomeLife: an outcome built from cached verdicts is shared by
// later messages of the same client, HELO name and sender, with the same
// reply and header, and lives no longer than the verdicts it was built
// from.
func TestQuickOutcomeLife(t *testing.T) {
	c, clk, _ := cachingChecker(t)
	first, want, err := check(t, c, "192.0.2.1", "a@pass.test", "h.test") // MAIL FROM verdict until +30s
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := policy.NewEngine(policy.Options{}, nil).Evaluate(context.Background(), first.Req, first.Msg).Action.String()
	clk.Advance(20 * time.Second)
	for _, inst := range []string{"j", "k"} { // k shares the outcome j built
		st := state("192.0.2.1", "a@pass.test", "h.test", inst, policy.NewMessage(inst))
		res, ok := c.Quick(st)
		header := policy.NewEngine(policy.Options{}, nil).Evaluate(context.Background(), st.Req, st.Msg).Action.String()
		if !ok || res != want || st.Facts.SPF != first.Facts.SPF || st.Facts.SPFDomain != first.Facts.SPFDomain || header != wantHeader {
			t.Fatalf("message %s: %+v %v, facts %+v, %s; want %+v, %+v, %s", inst, res, ok, st.Facts, header, want, first.Facts, wantHeader)
		}
	}
	clk.Advance(11 * time.Second) // the verdict has expired; the outcome built at +20s with it
	if res, ok := c.Quick(state("192.0.2.1", "a@pass.test", "h.test", "l", policy.NewMessage("l"))); ok {
		t.Errorf("after the verdict's life: answered from memory %+v", res)
	}
}
