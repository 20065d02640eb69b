package dnsbl_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

func lists(sites ...string) func(*dnsbl.Config) {
	return func(c *dnsbl.Config) {
		for _, s := range sites {
			c.Lists = append(c.Lists, dnsbl.List{Site: s})
		}
	}
}

func TestListedAndUnlisted(t *testing.T) {
	f := newFixture(t, lists("zen.test=127.0.0.[2..11]"))
	tests := []struct {
		client string
		want   string // "" for DUNNO
	}{
		{"127.0.0.2", "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.test; https://www.spamhaus.org/query/ip/127.0.0.2"},
		{"192.0.2.10", "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.test"},
		{"2001:db8::1", "554 5.7.1 Service unavailable; Client host [2001:db8::1] blocked using zen.test"},
		{"::ffff:192.0.2.10", "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.test"},
		{"192.0.2.1", ""},
		{"2001:db8::2", ""},
	}
	for _, tt := range tests {
		st := req(tt.client, "a@good.example", "mail.good.example", "")
		res := f.run(t, st)
		if got := res.Action.String(); tt.want == "" && !res.Action.IsDunno() || tt.want != "" && got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.client, got, tt.want)
		}
		listed := tt.want != ""
		if listed != (st.Facts.DNSScore == 1) || listed != slices.Equal(st.Facts.DNSListed, []string{"zen.test"}) {
			t.Errorf("%s: facts %+v", tt.client, st.Facts)
		}
	}
}

func TestFilters(t *testing.T) {
	tests := []struct {
		site   string
		client string
		listed bool
	}{
		{"zen.test=127.0.0.[2..3]", "192.0.2.11", false},  // answers 127.0.0.10 (PBL)
		{"zen.test=127.0.0.[10;11]", "192.0.2.11", true},  // PBL only
		{"zen.test=127.0.0.[10;11]", "192.0.2.10", false}, // XBL is not PBL
		{"zen.test=127.0.0.2", "192.0.2.12", true},        // one of two answers matches
		{"zen.test=127.0.0.[4..7]", "192.0.2.12", false},  // neither of two
		{"zen.test", "192.0.2.11", true},                  // no filter: any listing code
	}
	for _, tt := range tests {
		f := newFixture(t, lists(tt.site))
		res := f.run(t, req(tt.client, "", "", ""))
		if res.Action.IsReject() != tt.listed {
			t.Errorf("%s %s: got %v, want listed=%v", tt.site, tt.client, res.Action, tt.listed)
		}
	}
}

func TestWeightsSumToThreshold(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("spamcop.test*1", "zen.test=127.0.0.[2..11]*2", "zen.test=127.0.0.4*0.5")(c)
		c.RejectThreshold = 3
	})
	// 127.0.0.2 is on zen only, with code .2: 2 < 3.
	st := req("127.0.0.2", "", "", "")
	res := f.run(t, st)
	if !res.Action.IsDunno() || st.Facts.DNSScore != 2 || !strings.Contains(res.Reason, "listed zen.test") {
		t.Fatalf("below threshold: %v %q %+v", res.Action, res.Reason, st.Facts)
	}
	// 192.0.2.10 is on both, with code .4 matching both zen entries:
	// 1 + 2 + 0.5, each entry counted once.
	st = req("192.0.2.10", "", "", "")
	res = f.run(t, st)
	if !res.Action.IsReject() || st.Facts.DNSScore != 3.5 {
		t.Fatalf("at threshold: %v %+v", res.Action, st.Facts)
	}
	if !strings.Contains(res.Action.Text, "blocked using zen.test") {
		t.Errorf("the reply must name the heaviest list: %q", res.Action.Text)
	}
	if !slices.Equal(st.Facts.DNSListed, []string{"spamcop.test", "zen.test"}) {
		t.Errorf("listed %v", st.Facts.DNSListed)
	}
}

func TestNegativeWeightAllowlists(t *testing.T) {
	f := newFixture(t, lists("zen.test=127.0.0.[2..11]*2", "wl.test=127.0.[0..255].[1..3]*-5"))
	st := req("192.0.2.10", "", "", "") // on zen and on wl
	res := f.run(t, st)
	if !res.Action.IsDunno() || st.Facts.DNSScore != -3 || !st.Facts.DNSAllow {
		t.Fatalf("allowlisted: %v %+v", res.Action, st.Facts)
	}
	if !strings.Contains(res.Reason, "allowlisted wl.test") {
		t.Errorf("reason %q", res.Reason)
	}
	st = req("192.0.2.20", "", "", "") // on wl only
	f.run(t, st)
	if st.Facts.DNSScore != -5 || !st.Facts.DNSAllow || len(st.Facts.DNSListed) != 0 {
		t.Errorf("wl only: %+v", st.Facts)
	}
}

// TestErrorCodesAreNeverListings: even with no filter, which would match
// any 127/8 code, error replies must not score.
func TestErrorCodesAreNeverListings(t *testing.T) {
	tests := []struct{ site, client, sender string }{
		{"zen.test", "192.0.2.252", ""},       // typo in zone name
		{"zen.test", "192.0.2.254", ""},       // public resolver
		{"zen.test", "192.0.2.255", ""},       // rate limit
		{"zen.test", "192.0.2.77", ""},        // outside 127/8
		{"zen.test", "192.0.2.78", ""},        // 127.0.0.1
		{"wl.test*-1", "192.0.2.99", ""},      // dnswl over quota
		{"dbl.test", "", "a@ipquery.example"}, // DBL: IP queries not allowed
	}
	for _, tt := range tests {
		f := newFixture(t, func(c *dnsbl.Config) {
			c.Lists = []dnsbl.List{{Site: tt.site}}
			if strings.HasPrefix(tt.site, "dbl") {
				c.Lists[0].Kind = dnsbl.KindDomain
			}
		})
		st := req(tt.client, tt.sender, "", "")
		res := f.run(t, st)
		if !res.Action.IsDunno() || st.Facts.DNSScore != 0 || st.Facts.DNSAllow {
			t.Errorf("%s %s%s: %v %+v", tt.site, tt.client, tt.sender, res.Action, st.Facts)
		}
		if !strings.Contains(f.logs.String(), "list failed") {
			t.Errorf("%s %s%s: an error code must be logged as a failure", tt.site, tt.client, tt.sender)
		}
	}
}

func TestServfailIsNoAnswer(t *testing.T) {
	f := newFixture(t, lists("zen.test", "spamcop.test"))
	f.srv.SetRcode("10.2.0.192.zen.test", dns.RcodeServerFailure)
	st := req("192.0.2.10", "", "", "")
	res := f.run(t, st) // spamcop still answers
	if !res.Action.IsReject() || !slices.Equal(st.Facts.DNSListed, []string{"spamcop.test"}) {
		t.Fatalf("one list failing: %v %+v", res.Action, st.Facts)
	}
	if !strings.Contains(f.logs.String(), "SERVFAIL") || f.obs.get(f.obs.errors, "zen.test") != 1 {
		t.Errorf("SERVFAIL must be logged and observed: %s", f.logs)
	}
	f.srv.SetRcode("1.2.0.192.zen.test", dns.RcodeServerFailure)
	f.srv.SetRcode("1.2.0.192.spamcop.test", dns.RcodeServerFailure)
	_, err := f.check.Check(context.Background(), req("192.0.2.1", "", "", ""))
	if err == nil || !strings.Contains(err.Error(), "no list answered") {
		t.Fatalf("all lists failing must be an error for on_error, got %v", err)
	}
}

// TestSlowListHitsDeadline uses a real short deadline: the slow list is
// abandoned at dnsbl.timeout and the other list still decides.
func TestSlowListHitsDeadline(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("zen.test", "spamcop.test")(c)
		c.Timeout = 300 * time.Millisecond
	})
	f.srv.SetDelay("10.2.0.192.zen.test", 5*time.Second)
	start := time.Now()
	st := req("192.0.2.10", "", "", "")
	res := f.run(t, st)
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("took %v, want about the 300ms deadline", d)
	}
	if !res.Action.IsReject() || !slices.Equal(st.Facts.DNSListed, []string{"spamcop.test"}) {
		t.Fatalf("spamcop must still decide: %v %+v", res.Action, st.Facts)
	}
}

// TestParallel: two lists that each take 400ms cost 400ms together.
func TestParallel(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("zen.test", "spamcop.test")(c)
		c.RejectThreshold = 5 // no reply, so no TXT lookup after the A lookups
	})
	// Neither list answers until both were asked: asked one after the
	// other, the first would wait for a second query that never comes,
	// and fail at its timeout.
	gate, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	for _, q := range []string{"10.2.0.192.zen.test", "10.2.0.192.spamcop.test"} {
		f.srv.SetGate(q, gate)
	}
	go func() {
		for f.srv.Queries("10.2.0.192.zen.test", dns.TypeA) == 0 || f.srv.Queries("10.2.0.192.spamcop.test", dns.TypeA) == 0 {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
		close(gate)
	}()
	st := req("192.0.2.10", "", "", "")
	f.run(t, st)
	if st.Facts.DNSScore != 2 {
		t.Errorf("score %v, want 2: the lists were not asked in parallel", st.Facts.DNSScore)
	}
}

// wantQueries fails the test unless name's A record was asked n times:
// what says why that many.
func (f *fixture) wantQueries(t *testing.T, name string, n int, what string) {
	t.Helper()
	if got := f.srv.Queries(name, dns.TypeA); got != n {
		t.Fatalf("%s: %d queries for %s, want %d", what, got, name, n)
	}
}

func TestCacheTTL(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	const q = "2.0.0.127.zen.test"
	f.run(t, req("127.0.0.2", "", "", ""))
	f.run(t, req("127.0.0.2", "", "", ""))
	f.wantQueries(t, q, 1, "second lookup must come from the cache")
	f.srv.Remove(q) // delisted upstream
	f.clock.Advance(299 * time.Second)
	if res := f.run(t, req("127.0.0.2", "", "", "")); !res.Action.IsReject() {
		t.Fatalf("still cached at 299s of 300s: %v", res.Action)
	}
	f.clock.Advance(time.Second)
	if res := f.run(t, req("127.0.0.2", "", "", "")); !res.Action.IsDunno() {
		t.Fatalf("expired at 300s: %v", res.Action)
	}
	f.wantQueries(t, q, 2, "a fresh query after expiry")
	if n := f.obs.get(f.obs.cached, "zen.test"); n != 2 {
		t.Errorf("observer saw %d cached answers, want 2", n)
	}
}

func TestNegativeAndClampedTTL(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	for _, tc := range []struct {
		client, name string
		ttl          time.Duration // the TTL the cache must keep the answer for
		what         string
	}{
		{"192.0.2.1", "1.2.0.192.zen.test", 120 * time.Second, "NXDOMAIN, cached for the SOA's 120s"},
		{"192.0.2.5", "5.2.0.192.zen.test", 60 * time.Second, "a 5s record TTL raised to min_ttl (60s)"},
	} {
		f.run(t, req(tc.client, "", "", ""))
		f.clock.Advance(tc.ttl - time.Second)
		f.run(t, req(tc.client, "", "", ""))
		f.wantQueries(t, tc.name, 1, tc.what+", asked again 1s early")
		f.clock.Advance(time.Second)
		f.run(t, req(tc.client, "", "", ""))
		f.wantQueries(t, tc.name, 2, tc.what+", asked again at expiry")
	}
}

func TestMaxTTL(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("zen.test")(c)
		c.MinTTL, c.MaxTTL = time.Second, 10*time.Second
	})
	f.run(t, req("127.0.0.2", "", "", ""))
	f.clock.Advance(10 * time.Second)
	f.run(t, req("127.0.0.2", "", "", ""))
	f.wantQueries(t, "2.0.0.127.zen.test", 2, "TTL 300s must be capped at max_ttl 10s")
}

func TestRHSBLIdentities(t *testing.T) {
	dbl := func(ids ...dnsbl.Identity) func(*dnsbl.Config) {
		return func(c *dnsbl.Config) {
			c.Lists = []dnsbl.List{{Site: "dbl.test=127.0.1.[2..99]", Kind: dnsbl.KindDomain, Identities: ids}}
		}
	}
	tests := []struct {
		name                     string
		ids                      []dnsbl.Identity
		sender, helo, clientName string
		want                     string
	}{
		{"sender", nil, "x@Bad.Example", "mail.good.example", "", "Sender address [bad.example]"},
		{"helo", nil, "x@good.example", "badhelo.example", "", "Helo command [badhelo.example]"},
		{"client name", nil, "x@good.example", "mail.good.example", "badrdns.example.", "Client host [badrdns.example]"},
		{"unverified name", nil, "x@good.example", "mail.good.example", "unknown", ""},
		{"helo only asks helo", []dnsbl.Identity{dnsbl.Helo}, "x@bad.example", "mail.good.example", "", ""},
		{"sender only skips helo", []dnsbl.Identity{dnsbl.Sender}, "x@good.example", "badhelo.example", "", ""},
		{"address literal helo", nil, "", "[192.0.2.1]", "", ""},
		{"null sender", nil, "", "mail.good.example", "", ""},
	}
	for _, tt := range tests {
		f := newFixture(t, dbl(tt.ids...))
		res := f.run(t, req("192.0.2.1", tt.sender, tt.helo, tt.clientName))
		if tt.want == "" && !res.Action.IsDunno() || tt.want != "" && !strings.Contains(res.Action.Text, tt.want+" blocked using dbl.test") {
			t.Errorf("%s: got %q, want %q", tt.name, res.Action, tt.want)
		}
	}
	f := newFixture(t, dbl())
	res := f.run(t, req("192.0.2.1", "x@bad.example", "", ""))
	if !strings.HasSuffix(res.Action.Text, "; https://www.spamhaus.org/query/domain/bad.example") {
		t.Errorf("want the TXT reason: %q", res.Action.Text)
	}
	if n := f.srv.Queries("192.0.2.1", dns.TypeA) + f.srv.Queries("[192.0.2.1].dbl.test", dns.TypeA); n != 0 {
		t.Errorf("address literals must not be queried")
	}
}

func TestPauseAfterRepeatedFailures(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("zen.test", "spamcop.test")(c)
		c.PauseAfter, c.PauseFor = 3, time.Minute
	})
	clients := []string{"192.0.2.31", "192.0.2.32", "192.0.2.33", "192.0.2.34", "192.0.2.35"}
	for _, c := range clients {
		f.srv.SetRcode(reverseV4(c)+".zen.test", dns.RcodeServerFailure)
	}
	for _, c := range clients[:3] {
		f.run(t, req(c, "", "", ""))
	}
	if n := f.obs.get(f.obs.paused, "zen.test"); n != 1 {
		t.Fatalf("want one pause after 3 failures, got %d", n)
	}
	if !strings.Contains(f.logs.String(), "list paused") {
		t.Errorf("the pause must be logged")
	}
	f.run(t, req(clients[3], "", "", ""))
	if n := f.srv.Queries(reverseV4(clients[3])+".zen.test", dns.TypeA); n != 0 {
		t.Fatalf("a paused list must not be queried, got %d", n)
	}
	f.clock.Advance(time.Minute)
	f.run(t, req(clients[4], "", "", ""))
	f.wantQueries(t, reverseV4(clients[4])+".zen.test", 1, "after the pause the list is tried again,")
	if n := f.obs.get(f.obs.paused, "zen.test"); n != 2 {
		t.Fatalf("one more failure after a pause pauses again, got %d pauses", n)
	}
	if n := f.obs.get(f.obs.paused, "spamcop.test"); n != 0 {
		t.Errorf("the healthy list must not be paused")
	}
}

func TestPausedOnlyListIsAnError(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		lists("zen.test")(c)
		c.PauseAfter = 1
	})
	f.srv.SetRcode("1.2.0.192.zen.test", dns.RcodeServerFailure)
	f.check.Check(context.Background(), req("192.0.2.1", "", "", ""))
	_, err := f.check.Check(context.Background(), req("192.0.2.2", "", "", ""))
	if !errors.Is(err, dnsbl.ErrPaused) {
		t.Fatalf("want ErrPaused, got %v", err)
	}
}

func TestConcurrentQueriesMerged(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	f.srv.SetDelay("2.0.0.127.zen.test", 300*time.Millisecond)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			res, err := f.check.Check(context.Background(), req("127.0.0.2", "", "", ""))
			if err != nil || !res.Action.IsReject() {
				t.Errorf("concurrent check: %v %v", res.Action, err)
			}
		})
	}
	wg.Wait()
	if n := f.srv.Queries("2.0.0.127.zen.test", dns.TypeA); n != 1 {
		t.Fatalf("20 concurrent identical lookups sent %d queries, want 1", n)
	}
}

// TestDQSKeyStaysSecret: the zone holds the key; replies and logs show the
// display name only.
func TestDQSKeyStaysSecret(t *testing.T) {
	const key = "abcdefghijklmnopqrstuvwxyz"
	zone := key + ".zen.dq.spamhaus.net"
	f := newFixture(t, lists(zone+"=127.0.0.[2..11]"))
	f.srv.Add("2.0.0.127."+zone+". 300 IN A 127.0.0.2",
		"2.0.0.127."+zone+". 300 IN TXT \"listed in "+strings.ToUpper(zone)+", see https://check.spamhaus.org/\"",
		"3.0.0.127."+zone+". 300 IN A 127.255.255.254")
	f.srv.SetRcode("1.0.0.127."+zone, dns.RcodeServerFailure)
	st := req("127.0.0.2", "", "", "")
	res := f.run(t, st)
	want := "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.dq.spamhaus.net; listed in zen.dq.spamhaus.net, see https://check.spamhaus.org/"
	if res.Action.String() != want {
		t.Errorf("reply %q\nwant  %q", res.Action, want)
	}
	f.run(t, req("127.0.0.3", "", "", ""))
	_, err := f.check.Check(context.Background(), req("127.0.0.1", "", "", ""))
	for what, s := range map[string]string{"reply": res.Action.String(), "reason": res.Reason,
		"facts": strings.Join(st.Facts.DNSListed, ","), "logs": f.logs.String(), "error": err.Error()} {
		if strings.Contains(strings.ToLower(s), key) {
			t.Errorf("the DQS key leaked into the %s: %s", what, s)
		}
	}
	if !strings.Contains(f.logs.String(), "list=zen.dq.spamhaus.net") {
		t.Errorf("logs must name the list: %s", f.logs)
	}
}

func TestNoClientNoQueries(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	res := f.run(t, req("", "", "", ""))
	if !res.Action.IsDunno() || res.Reason != "" {
		t.Fatalf("%v %q", res.Action, res.Reason)
	}
	// DUNNO alone would also come from an NXDOMAIN answer.
	if n := f.obs.get(f.obs.queries, "zen.test"); n != 0 {
		t.Errorf("%d queries sent for a request without a client address", n)
	}
}

func reverseV4(ip string) string {
	p := strings.Split(ip, ".")
	slices.Reverse(p)
	return strings.Join(p, ".")
}

// Quick scores a request whose every answer is cached, as Check would,
// counting each as a cache hit; a name not cached, and a score that
// rejects (its reply may need the list's TXT record), are left to Check.
func TestQuick(t *testing.T) {
	f := newFixture(t, lists("zen.test=127.0.0.[2..11]*2", "wl.test=127.0.[0..255].[1..3]*-5"))
	if res, ok := f.check.Quick(req("192.0.2.10", "", "", "")); ok {
		t.Fatalf("nothing cached, yet answered from memory: %+v", res)
	}
	f.run(t, req("192.0.2.10", "", "", "")) // on zen and on wl: cached
	hits := f.obs.get(f.obs.cached, "zen.test")
	st := req("192.0.2.10", "", "", "")
	res, ok := f.check.Quick(st)
	if !ok || !res.Action.IsDunno() || st.Facts.DNSScore != -3 || !st.Facts.DNSAllow || !strings.Contains(res.Reason, "allowlisted wl.test") {
		t.Fatalf("cached answers: %+v, %v, facts %+v; want Check's allowlisted pass", res, ok, st.Facts)
	}
	if n := f.obs.get(f.obs.cached, "zen.test") - hits; n != 1 {
		t.Errorf("%d cache hits counted, want 1", n)
	}
	f.wantQueries(t, "10.2.0.192.zen.test", 1, "Quick asks no query")

	f.run(t, req("192.0.2.12", "", "", "")) // on zen only: rejects
	st = req("192.0.2.12", "", "", "")
	if res, ok := f.check.Quick(st); ok || st.Facts.DNSScore != 0 {
		t.Fatalf("a rejecting score answered from memory: %+v, facts %+v", res, st.Facts)
	}
	if res, ok := f.check.Quick(req("", "", "", "")); !ok || !res.Action.IsDunno() {
		t.Fatalf("nothing to ask about: %+v, %v; want a pass", res, ok)
	}
}

// Quick keeps a client's passing score until the first of the answers it
// came from expires, and no longer: the score is Check's throughout, and
// each request still counts its cache hits.
func TestQuickKeepsScoreWhileAnswersLast(t *testing.T) {
	f := newFixture(t, lists("zen.test=127.0.0.[2..11]*0.5", "wl.test=127.0.[0..255].[1..3]*-5"))
	// zen answers 192.0.2.5 with a 5 s TTL, cached for min_ttl (60 s);
	// wl.test has no such name, a negative answer cached for the SOA's
	// 120 s. The kept score lasts as long as the shorter.
	want := f.run(t, req("192.0.2.5", "", "", ""))
	if want.Reason != "listed zen.test (score 0.5)" {
		t.Fatalf("Check: %+v", want)
	}
	for _, at := range []time.Duration{0, 30 * time.Second, 59 * time.Second} {
		f.clock.Set(t0.Add(at))
		hits := f.obs.get(f.obs.cached, "zen.test")
		st := req("192.0.2.5", "", "", "")
		res, ok := f.check.Quick(st)
		if !ok || res != want || st.Facts.DNSScore != 0.5 || !slices.Equal(st.Facts.DNSListed, []string{"zen.test"}) {
			t.Fatalf("at %s: %+v, %v, facts %+v; want Check's %+v", at, res, ok, st.Facts, want)
		}
		if n := f.obs.get(f.obs.cached, "zen.test") - hits; n != 1 {
			t.Errorf("at %s: %d cache hits counted, want 1", at, n)
		}
	}
	f.clock.Set(t0.Add(61 * time.Second))
	if res, ok := f.check.Quick(req("192.0.2.5", "", "", "")); ok {
		t.Fatalf("zen's answer expired, yet the score was kept: %+v", res)
	}
	f.run(t, req("192.0.2.5", "", "", "")) // asks zen again
	f.wantQueries(t, "5.2.0.192.zen.test", 2, "the expired answer is asked again")
	if res, ok := f.check.Quick(req("192.0.2.5", "", "", "")); !ok || res != want {
		t.Fatalf("after the new answer: %+v, %v; want %+v", res, ok, want)
	}
}
