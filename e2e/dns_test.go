package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/daemontest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/internal/postfixtest"
)

// The tests here run mxpolicyd behind a real Postfix, and two daemons
// sharing one database, which must agree. Every lookup the
// daemon makes goes to an in-process DNS server on 127.0.0.1 (dns.server),
// so nothing leaves the loopback interface.

// dnsConfig is the config head that points the lists and SPF at srv.
func dnsConfig(srv *dnstest.Server) string {
	return fmt.Sprintf("dns:\n  server: %s\n", srv.Addr())
}

// A listed client gets 554 at RCPT naming the list and carrying its TXT
// reason; an unlisted one passes (greylisting is off, so the list alone
// decides).
func TestDNSBLThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	const reason = "Listed by zen.test, see https://zen.test/query/ip/192.0.2.99"
	srv := dnstest.New(t,
		"zen.test. 300 IN SOA ns.zen.test. hostmaster.zen.test. 1 3600 600 86400 60",
		"2.0.0.127.zen.test. 300 IN A 127.0.0.2", // RFC 5782 §5 test entry: passes the self-check
		"99.2.0.192.zen.test. 300 IN A 127.0.0.2",
		`99.2.0.192.zen.test. 300 IN TXT "`+reason+`"`,
	)
	d, pf := startBehindPostfix(t, dnsConfig(srv)+`
dnsbl:
  lists: ["zen.test=127.0.0.[2..11]"]
`)

	res := rcptAt(t, pf, "192.0.2.99", "bad.sender.test", "alice@sender.test", "bob@example.test")
	r := res.Rcpt(0)
	if r.Code != 554 || !strings.Contains(r.Text, "blocked using zen.test") || !strings.Contains(r.Text, reason) {
		t.Errorf("listed client: RCPT got %v, want 554 naming zen.test with %q\n%s", r, reason, res)
	}
	if rec := d.DecisionsFor(t, "bob@example.test", 1)[0]; rec["check"] != "dnsbl" {
		t.Errorf("listed client: decided by check %v, want dnsbl", rec["check"])
	}

	res = rcptAt(t, pf, "192.0.2.10", "good.sender.test", "alice@sender.test", "carol@example.test")
	if res.RcptCode(0) != 250 {
		t.Errorf("unlisted client: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
	// The 250 must come from a list that was asked and said no, not from
	// a daemon that never looked.
	if n := srv.Queries("10.2.0.192.zen.test", dns.TypeA); n != 1 {
		t.Errorf("unlisted client: zen.test was asked %d times for 10.2.0.192, want 1", n)
	}
	rec := d.DecisionsFor(t, "carol@example.test", 1)[0]
	if action, _ := rec["action"].(string); action != "DUNNO" && !strings.HasPrefix(action, "PREPEND ") {
		t.Errorf("unlisted client: action %q, want DUNNO or PREPEND", action)
	}
}

// A sender whose domain does not authorize the client gets 550 5.7.23 at
// RCPT; the same sender from an authorized host is accepted.
func TestSPFFailThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	srv := dnstest.New(t, `sender.test. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"`)
	d, pf := startBehindPostfix(t, dnsConfig(srv))

	res := rcptAt(t, pf, "192.0.2.40", "forger.example", "alice@sender.test", "bob@example.test")
	if r := res.Rcpt(0); r.Code != 550 || !strings.HasPrefix(r.Text, "5.7.23 ") {
		t.Errorf("SPF fail: RCPT got %v, want 550 5.7.23\n%s", r, res)
	}
	if rec := d.DecisionsFor(t, "bob@example.test", 1)[0]; rec["check"] != "spf" {
		t.Errorf("SPF fail: decided by check %v, want spf", rec["check"])
	}

	res = rcptAt(t, pf, "198.51.100.40", "mail.sender.test", "alice@sender.test", "carol@example.test")
	if res.RcptCode(0) != 250 {
		t.Errorf("SPF pass: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
}

// poolRecords publish pool.test's SPF policy: two unrelated /24 networks,
// as a big sender's outbound pool spans several.
var poolRecords = []string{
	`pool.test. 300 IN TXT "v=spf1 ip4:203.0.113.0/24 ip4:198.51.100.0/24 -all"`,
}

// A greylisted sender whose retry comes from another network of its
// SPF-authorized pool passes after the delay without a second deferral.
// With a network key the retry, from another /24, would be a new triplet
// and be deferred again: this test fails without pool-aware matching.
//
// The message has two recipients so that both queued headers go out:
// Postfix takes one action per reply, so the first recipient's reply
// prepends Received-SPF and the second's X-Greylist.
func TestPoolAwareGreylistingThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	srv := dnstest.New(t, poolRecords...)
	// greylist.delay as in greylistConfig: a real 2 s wait (Postfix and
	// swaks cannot share an injected clock). Debug logging shows the key.
	d := startDaemon(t, daemontest.Options{Config: dnsConfig(srv) + `
log:
  level: debug
greylist:
  delay: 2s
`})
	pf := postfixtest.Start(t, postfixtest.Options{PolicyAddr: d.Addr})
	rcpts := []string{"bob@example.test", "carol@example.test"}
	mail := postfixtest.Mail{From: "news@pool.test", To: rcpts,
		ClientAddr: "203.0.113.10", Helo: "out1.pool.test", QuitAfter: "RCPT"}
	res := pf.Swaks(t, mail)
	firstDone := time.Now() // the first contact ended: its triplets are recorded
	for i := range rcpts {
		if res.RcptCode(i) != 450 || !strings.Contains(res.Rcpt(i).Text, "Greylisted") {
			t.Fatalf("first contact, RCPT %d: got %v, want 450 ... Greylisted\n%s", i, res.Rcpt(i), res)
		}
	}

	time.Sleep(time.Until(firstDone.Add(greylistDelay + 250*time.Millisecond)))
	mail.ClientAddr, mail.Helo = "198.51.100.20", "out2.pool.test"
	mail.QuitAfter, mail.Body = "", "pool retry\n"
	res = pf.Swaks(t, mail)
	for i := range rcpts {
		if res.RcptCode(i) != 250 {
			t.Fatalf("retry from another network of the pool, RCPT %d: got %v, want 250\n%s", i, res.Rcpt(i), res)
		}
	}
	if res.DataEnd().Code != 250 {
		t.Fatalf("retry: end of DATA got %v, want 250\n%s", res.DataEnd(), res)
	}
	for _, rcpt := range rcpts {
		recs := d.DecisionsFor(t, rcpt, 2)
		if a, _ := recs[0]["action"].(string); !strings.HasPrefix(a, "DEFER_IF_PERMIT") {
			t.Errorf("%s, first contact: action %q, want DEFER_IF_PERMIT", rcpt, a)
		}
		// The retry's log line names the first check that let it pass
		// (spf), so the greylist's own verdict comes from its debug record.
		if a, _ := recs[1]["action"].(string); !strings.HasPrefix(a, "PREPEND ") {
			t.Errorf("%s, retry: action %q, want PREPEND of a queued header", rcpt, a)
		}
	}
	assertGreylistKeys(t, d, "spf:pool.test", "bob@example.test", "passed")
	assertDeliveredHeaders(t, pf, len(rcpts), "X-Greylist: delayed ", "Received-SPF: pass ")
}

// assertGreylistKeys checks the greylist's debug records (one per store
// decision; passes answered from the daemon's cache have none): every
// one is keyed by clientKey, and rcpt got verdict among them.
func assertGreylistKeys(t *testing.T, d *daemontest.Daemon, clientKey, rcpt, verdict string) {
	t.Helper()
	recs := d.Records("greylist key")
	found := false
	for _, rec := range recs {
		if rec["client_key"] != clientKey {
			t.Errorf("greylist decision for %v keyed by %v, want %q", rec["rcpt_key"], rec["client_key"], clientKey)
		}
		found = found || (rec["rcpt_key"] == rcpt && rec["verdict"] == verdict)
	}
	if !found {
		t.Errorf("no greylist decision %q for %s among %d records: %v", verdict, rcpt, len(recs), recs)
	}
}

// assertDeliveredHeaders waits for n delivered copies and checks that each
// carries each header (by prefix) exactly once.
func assertDeliveredHeaders(t *testing.T, pf *postfixtest.Postfix, n int, prefixes ...string) {
	t.Helper()
	for _, msg := range pf.WaitDelivered(t, n, 30*time.Second) {
		head, _, _ := strings.Cut(strings.ReplaceAll(msg, "\r\n", "\n"), "\n\n")
		for _, p := range prefixes {
			if c := strings.Count("\n"+head, "\n"+p); c != 1 {
				t.Errorf("delivered message has %d %q headers, want 1:\n%s", c, p, head)
			}
		}
	}
}

// Two daemons on one PostgreSQL database, each behind its own Postfix,
// agree: a triplet first seen by A is an early retry for B, and passes at
// B after the delay; a whitelist entry added with the CLI reaches both
// running daemons within whitelist.refresh, without a restart.
func TestSharedDatabaseThroughPostfix(t *testing.T) {
	postfixtest.Require(t, "postfix", "swaks")
	t.Parallel()
	dsn := pgtest.New(t)
	opt := daemontest.Options{Config: greylistConfig, Database: dsn, Files: map[string]string{"clients": ""}}
	da, db := startDaemon(t, opt), startDaemon(t, opt)
	pfa := postfixtest.Start(t, postfixtest.Options{PolicyAddr: da.Addr})
	pfb := postfixtest.Start(t, postfixtest.Options{PolicyAddr: db.Addr})

	mail := postfixtest.Mail{From: "alice@sender.test", To: []string{"bob@example.test"},
		ClientAddr: "192.0.2.60", Helo: "mail.sender.test", QuitAfter: "RCPT"}
	first := time.Now()
	if res := pfa.Swaks(t, mail); res.RcptCode(0) != 450 {
		t.Fatalf("first contact via A: RCPT got %v, want 450\n%s", res.Rcpt(0), res)
	}
	firstDone := time.Now() // the first contact ended: its triplet is recorded
	res := pfb.Swaks(t, mail)
	if time.Since(first) >= greylistDelay {
		t.Fatalf("the early retry came %v after the first attempt, not before the %v delay: inconclusive", time.Since(first), greylistDelay)
	}
	if res.RcptCode(0) != 450 {
		t.Fatalf("early retry via B: RCPT got %v, want 450\n%s", res.Rcpt(0), res)
	}
	if r := db.DecisionsFor(t, "bob@example.test", 1)[0]["reason"]; r != "early retry" {
		t.Errorf("early retry via B: reason %v, want %q (B must see A's triplet)", r, "early retry")
	}
	time.Sleep(time.Until(firstDone.Add(greylistDelay + 250*time.Millisecond)))
	if res := pfb.Swaks(t, mail); res.RcptCode(0) != 250 {
		t.Fatalf("retry after the delay via B: RCPT got %v, want 250\n%s", res.Rcpt(0), res)
	}
	if r := db.DecisionsFor(t, "bob@example.test", 2)[1]["reason"]; r != "passed after delay" {
		t.Errorf("retry via B: reason %v, want %q", r, "passed after delay")
	}

	testSharedWhitelist(t, dsn, map[string]*postfixtest.Postfix{"A": pfa, "B": pfb},
		map[string]*daemontest.Daemon{"A": da, "B": db})
}

// testSharedWhitelist adds a client entry with "mxpolicyd whitelist add"
// and waits for both daemons to let the client through.
func testSharedWhitelist(t *testing.T, dsn string, pfs map[string]*postfixtest.Postfix, ds map[string]*daemontest.Daemon) {
	// Another /24 than the greylisted client's, so no auto-whitelisting
	// of that network can answer for it.
	const client = "198.51.100.77"
	for name, pf := range pfs {
		rcpt := "before-" + strings.ToLower(name) + "@example.test"
		res := pf.Swaks(t, postfixtest.Mail{From: "dave@partner.test", To: []string{rcpt}, ClientAddr: client, QuitAfter: "RCPT"})
		if res.RcptCode(0) != 450 {
			t.Fatalf("daemon %s, before the whitelist entry: RCPT got %v, want 450\n%s", name, res.Rcpt(0), res)
		}
	}
	out, err := exec.Command(binary, "whitelist", "add", "client", client, "--database", dsn,
		"--comment", "e2e shared database").CombinedOutput()
	if err != nil {
		t.Fatalf("mxpolicyd whitelist add: %v\n%s", err, out)
	}
	added := time.Now()
	for name, pf := range pfs {
		rcpt := waitWhitelisted(t, pf, client, name, added.Add(5*time.Second))
		t.Logf("daemon %s let the whitelisted client through %v after the entry was added", name, time.Since(added).Round(time.Millisecond))
		if rec := ds[name].DecisionsFor(t, rcpt, 1)[0]; rec["check"] != "whitelist" {
			t.Errorf("daemon %s: decided by check %v, want whitelist", name, rec["check"])
		}
	}
}

// waitWhitelisted sends from client through pf, each time to a recipient
// never seen before, until RCPT gets 250 or deadline passes; it returns the
// recipient that passed. A fresh recipient is a new triplet, which
// greylisting always defers, so only the whitelist can answer 250.
func waitWhitelisted(t *testing.T, pf *postfixtest.Postfix, client, name string, deadline time.Time) string {
	t.Helper()
	for i := 0; ; i++ {
		rcpt := fmt.Sprintf("poll-%s-%d@example.test", strings.ToLower(name), i)
		res := pf.Swaks(t, postfixtest.Mail{From: "dave@partner.test", To: []string{rcpt}, ClientAddr: client, QuitAfter: "RCPT"})
		switch {
		case res.RcptCode(0) == 250:
			return rcpt
		case res.RcptCode(0) != 450:
			t.Fatalf("daemon %s, waiting for the whitelist entry: RCPT got %v, want 450 or 250\n%s", name, res.Rcpt(0), res)
		case time.Now().After(deadline):
			t.Fatalf("daemon %s: whitelist entry for %s not in effect 5s after it was added", name, client)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
