package spf_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
)

// defaultChecker is the check as the daemon builds it, with the default
// spf config (no spf.timeout of its own), against server.
func defaultChecker(t *testing.T, server string, dnsTimeout time.Duration) *spf.Checker {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: server, Timeout: dnsTimeout})
	if err != nil {
		t.Fatal(err)
	}
	cfg := spf.DefaultConfig()
	cfg.Receiver = "mx.local.test"
	c, err := spf.New(cfg, r, spf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// greylistStub stands for the greylisting step after SPF: it always
// defers, so an answer other than its own means it was skipped.
var greylistStub = policy.Step{Timeout: 1500 * time.Millisecond, Check: stubCheck{"greylist",
	policy.Action{Verb: policy.DeferIfPermit, Text: "4.2.0 Greylisted"}}}

type stubCheck struct {
	name string
	a    policy.Action
}

func (s stubCheck) Name() string { return s.name }
func (s stubCheck) Check(context.Context, *policy.State) (policy.Result, error) {
	return policy.Result{Action: s.a, Reason: "new triplet"}, nil
}

func rcptReq(sender, instance string) *policy.Request {
	return &policy.Request{ProtocolState: "RCPT", ClientAddress: mustAddr("192.0.2.1"),
		Sender: sender, HeloName: "h.test", Recipient: "u@local.test", Instance: instance}
}

// TestSlowDNSGivesOneAnswer is the slow-resolver case: every name takes
// 1.9s, the record needs two lookups, so SPF never finishes within its
// 2.5s share. Every request must get the same answer, from greylisting,
// which always keeps its own share.
func TestSlowDNSGivesOneAnswer(t *testing.T) {
	srv := dnstest.New(t, zones...)
	srv.Add(`twolookups.test. 300 IN TXT "v=spf1 a:host.twolookups.test -all"`,
		"host.twolookups.test. 300 IN A 192.0.2.1")
	for _, n := range []string{"twolookups.test", "host.twolookups.test"} {
		srv.SetDelay(n, 1900*time.Millisecond)
	}
	c := defaultChecker(t, srv.Addr(), 2*time.Second)
	eng := policy.NewEngine(policy.Options{Budget: 6 * time.Second, Logger: quietLog()}, []policy.Step{
		{Check: c, Timeout: 2500 * time.Millisecond, OnError: policy.DunnoAction}, greylistStub})
	const n = 10
	actions := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := eng.Evaluate(context.Background(), rcptReq("a@twolookups.test", "i"), policy.NewMessage("i"))
			actions[i] = d.Action.String()
		})
	}
	wg.Wait()
	for i, a := range actions {
		if a != greylistStub.Check.(stubCheck).a.String() {
			t.Fatalf("request %d answered %q; all: %q", i, a, actions)
		}
	}
}

// silentServer reads queries and never answers: a resolver that hangs.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// TestDeadResolverFailsByOnError: when our resolver gives no response,
// SPF has no result; the check errs with ErrResolver, the engine answers
// checks.spf.on_error (DUNNO by default) and no Received-SPF is queued.
func TestDeadResolverFailsByOnError(t *testing.T) {
	srv := dnstest.New(t, zones...)
	srv.SetDelay("pass.test", time.Hour)
	for what, server := range map[string]string{
		"never answers": silentServer(t),
		"closed port":   dnstest.ClosedAddr(t),
		"hangs on name": srv.Addr(),
	} {
		c := defaultChecker(t, server, 200*time.Millisecond)
		msg := policy.NewMessage("i1")
		_, err := c.Check(context.Background(), &policy.State{Req: rcptReq("a@pass.test", "i1"), Msg: msg})
		if !errors.Is(err, spf.ErrResolver) || !resolver.IsTransport(err) {
			t.Errorf("%s: want ErrResolver wrapping a transport failure, got %v", what, err)
		}
		eng := policy.NewEngine(policy.Options{Logger: quietLog()}, []policy.Step{
			{Check: c, Timeout: 2500 * time.Millisecond, OnError: policy.DunnoAction}})
		for _, rcpt := range []string{"a@local.test", "b@local.test"} {
			req := rcptReq("a@pass.test", "i2")
			req.Recipient = rcpt
			d := eng.Evaluate(context.Background(), req, policy.NewMessage("i2"))
			if d.Action != policy.DunnoAction || len(d.Errors) != 1 || !errors.Is(d.Errors[0].Err, spf.ErrResolver) {
				t.Errorf("%s: engine answered %v (errors %v), want DUNNO by on_error", what, d.Action, d.Errors)
			}
		}
	}
}

// TestDeadResolverOnPTRFailsByOnError: the library makes a DNS error in
// the ptr mechanism's lookups a non-match (RFC 7208 §5.5), so a PTR query
// our resolver never answers let the record end in -all: a fail (550) for
// our resolver's fault. It leaves no SPF result instead, as any other
// lookup our resolver does not answer.
func TestDeadResolverOnPTRFailsByOnError(t *testing.T) {
	srv := dnstest.New(t, zones...)
	srv.Add(`ptr.test. 300 IN TXT "v=spf1 ptr:ptr.test -all"`)
	srv.SetDelay("1.2.0.192.in-addr.arpa", time.Hour)
	c := defaultChecker(t, srv.Addr(), 200*time.Millisecond)
	res, err := c.Check(context.Background(), &policy.State{Req: rcptReq("a@ptr.test", "i1"), Msg: policy.NewMessage("i1")})
	if !errors.Is(err, spf.ErrResolver) {
		t.Fatalf("our resolver silent on the PTR query: got %v (%q, err %v), want ErrResolver", res.Action, res.Reason, err)
	}
}

// TestDeadResolverOnHeloPTRIsNotKept: the same for the HELO identity,
// which is kept for minutes per client and HELO name: the identity is
// unchecked while our resolver is silent, and checked again (a pass) once
// it answers, not failed from memory.
func TestDeadResolverOnHeloPTRIsNotKept(t *testing.T) {
	srv := ptrHeloZone(t)
	srv.SetDelay("1.2.0.192.in-addr.arpa", time.Hour)
	send := heloSender(defaultChecker(t, srv.Addr(), 200*time.Millisecond))
	if res, err := send("i1"); !res.Action.IsDunno() || err != nil {
		t.Errorf("resolver silent on the PTR query: got %v (%v), want DUNNO (MAIL FROM passes, HELO unchecked)", res.Action, err)
	}
	srv.SetDelay("1.2.0.192.in-addr.arpa", 0)
	if res, err := send("i2"); !res.Action.IsDunno() || err != nil {
		t.Errorf("resolver answering again: got %v (%v), want DUNNO (HELO passes)", res.Action, err)
	}
}

// TestHeloFailFromSenderDNSFailureIsNotKept: a SERVFAIL from the client's
// reverse zone makes the ptr mechanism a non-match, so the HELO identity
// fails, as RFC 7208 §5.5 says; but the failure is temporary, so the
// fail is not kept (as mailFromCheck keeps no such verdict), and the
// next message, once the zone answers, passes.
func TestHeloFailFromSenderDNSFailureIsNotKept(t *testing.T) {
	srv := ptrHeloZone(t)
	srv.SetRcode("1.2.0.192.in-addr.arpa", dns.RcodeServerFailure)
	send := heloSender(defaultChecker(t, srv.Addr(), 2*time.Second))
	if res, err := send("i1"); res.Action.IsDunno() || err != nil {
		t.Fatalf("reverse zone failing: got %v (%v), want the helo_fail action", res.Action, err)
	}
	srv.SetRcode("1.2.0.192.in-addr.arpa", dns.RcodeSuccess)
	if res, err := send("i2"); !res.Action.IsDunno() || err != nil {
		t.Errorf("reverse zone answering again: got %v (%v), want DUNNO (HELO passes)", res.Action, err)
	}
}

// ptrHeloZone serves a HELO domain whose record passes only a client
// whose PTR name is in it; 192.0.2.1's is.
func ptrHeloZone(t *testing.T) *dnstest.Server {
	srv := dnstest.New(t, zones...)
	srv.Add(`ptrhelo.test. 300 IN TXT "v=spf1 ptr:ptrhelo.test -all"`,
		"1.2.0.192.in-addr.arpa. 300 IN PTR mail.ptrhelo.test.",
		"mail.ptrhelo.test. 300 IN A 192.0.2.1")
	return srv
}

// heloSender checks messages from 192.0.2.1 with HELO ptrhelo.test and a
// sender that passes, so the HELO identity alone can refuse.
func heloSender(c *spf.Checker) func(inst string) (policy.Result, error) {
	return func(inst string) (policy.Result, error) {
		req := rcptReq("a@pass.test", inst)
		req.HeloName = "ptrhelo.test"
		return c.Check(context.Background(), &policy.State{Req: req, Msg: policy.NewMessage(inst)})
	}
}

// TestSenderDNSFailureIsTempError: our resolver answers, the sender's
// side fails (SERVFAIL): temperror and its action, as RFC 7208 §2.6.6.
func TestSenderDNSFailureIsTempError(t *testing.T) {
	srv := dnstest.New(t, zones...)
	srv.SetRcode("pass.test", dns.RcodeServerFailure)
	c := defaultChecker(t, srv.Addr(), 2*time.Second)
	eng := policy.NewEngine(policy.Options{Logger: quietLog()}, []policy.Step{
		{Check: c, Timeout: 2500 * time.Millisecond, OnError: policy.DunnoAction}})
	d := eng.Evaluate(context.Background(), rcptReq("a@pass.test", "i1"), policy.NewMessage("i1"))
	if d.Action.Verb != policy.DeferIfPermit || !strings.Contains(d.Action.Text, "4.7.24") ||
		d.Facts.SPF != "temperror" || len(d.Errors) != 0 {
		t.Fatalf("got %v (spf %q, errors %v), want the temperror action", d.Action, d.Facts.SPF, d.Errors)
	}
}

// Any response code but 0 and 3 for the sender's records is temperror
// (RFC 7208 §4.4), never permerror: go/spf makes a DNS error that is not
// temporary a permerror.
func TestOtherRcodeIsTempError(t *testing.T) {
	for _, rc := range []int{dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeYXDomain} {
		srv := dnstest.New(t, zones...)
		srv.SetRcode("pass.test", rc)
		c := defaultChecker(t, srv.Addr(), 2*time.Second)
		eng := policy.NewEngine(policy.Options{Logger: quietLog()}, []policy.Step{
			{Check: c, Timeout: 2500 * time.Millisecond, OnError: policy.DunnoAction}})
		d := eng.Evaluate(context.Background(), rcptReq("a@pass.test", "i1"), policy.NewMessage("i1"))
		if d.Facts.SPF != "temperror" {
			t.Errorf("%s for the sender's TXT: spf %q, action %v; want temperror", dns.RcodeToString[rc], d.Facts.SPF, d.Action)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
