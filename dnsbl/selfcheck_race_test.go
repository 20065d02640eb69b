package dnsbl_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A list starts listing everyone (a wildcard record). A lookup sent just
// before the self-check caught it answers after the probe dropped the
// zone's cached answers: that answer must not outlive the purge. Once the list is fixed and passes again,
// the client it never listed must not be rejected from the cache for the
// rest of the answer's TTL.
func TestInFlightAnswerOfBrokenListNotKept(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	ctx := context.Background()
	const qname = "50.2.0.192.zen.test"
	if h := f.check.Probe(ctx); h[0].State != "healthy" {
		t.Fatalf("before: %v", h)
	}
	// The list breaks: every name is listed.
	if err := f.srv.Add("*.zen.test. 300 IN A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	f.srv.SetGate(qname, gate)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.check.Check(ctx, req("192.0.2.50", "", "", "")) // in flight while the probe runs
	}()
	for deadline := time.Now().Add(5 * time.Second); f.srv.Queries(qname, dns.TypeA) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the lookup never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h := f.check.Probe(ctx); h[0].State != "unhealthy" {
		t.Fatalf("broken list: %v", h)
	}
	close(gate) // the in-flight answer (listed) arrives after the purge
	<-done

	// The list is fixed and passes its self-check again.
	f.srv.Remove("*.zen.test")
	if h := f.check.Probe(ctx); h[0].State != "healthy" {
		t.Fatalf("fixed list: %v", h)
	}
	res := f.run(t, req("192.0.2.50", "", "", ""))
	if !res.Action.IsDunno() {
		t.Fatalf("192.0.2.50 is not listed by the fixed list, but got %v (queries for it: %d): "+
			"the broken list's answer was cached after the purge", res.Action, f.srv.Queries(qname, dns.TypeA))
	}
}
