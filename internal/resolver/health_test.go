package resolver_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/metrics"
)

// *metrics.Metrics is what the daemon passes to SetObserver.
var _ resolver.Observer = (*metrics.Metrics)(nil)

type healthSpy struct {
	mu       sync.Mutex
	failures int
	states   []bool
}

func (s *healthSpy) ResolverFailure() { s.mu.Lock(); s.failures++; s.mu.Unlock() }
func (s *healthSpy) ResolverHealthy(ok bool) {
	s.mu.Lock()
	s.states = append(s.states, ok)
	s.mu.Unlock()
}

// TestHealthFollowsTransportFailures: queries that get no response make
// the resolver unhealthy; an error response does not; any response heals.
func TestHealthFollowsTransportFailures(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetRcode("fail.test", dns.RcodeServerFailure)
	srv.SetDelay("slow.test", 2*time.Second)
	r := newResolver(t, srv, 100*time.Millisecond)
	spy := &healthSpy{}
	r.SetObserver(spy)
	ctx := context.Background()
	for range resolver.UnhealthyAfter + 1 {
		if _, err := r.Exchange(ctx, "fail.test", dns.TypeA); resolver.IsTransport(err) {
			t.Fatalf("SERVFAIL is a response, not a transport failure: %v", err)
		}
	}
	if !r.Healthy() {
		t.Fatal("SERVFAIL answers made the resolver unhealthy")
	}
	for i := range resolver.UnhealthyAfter {
		if !r.Healthy() {
			t.Fatalf("unhealthy after %d silent queries, want %d", i, resolver.UnhealthyAfter)
		}
		_, err := r.Exchange(ctx, "slow.test", dns.TypeA)
		if !resolver.IsTransport(err) {
			t.Fatalf("a timeout must be a transport failure: %v", err)
		}
	}
	if r.Healthy() {
		t.Fatal("still healthy after repeated timeouts")
	}
	if _, err := r.Exchange(ctx, "a.test", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if !r.Healthy() {
		t.Fatal("an answer did not make the resolver healthy again")
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if spy.failures != resolver.UnhealthyAfter || len(spy.states) != 3 || !spy.states[0] || spy.states[1] || !spy.states[2] {
		t.Fatalf("observer saw %d failures, states %v; want %d, [true false true]", spy.failures, spy.states, resolver.UnhealthyAfter)
	}
}

func TestClosedPortIsTransportFailure(t *testing.T) {
	r, err := resolver.New(resolver.Config{Server: dnstest.ClosedAddr(t), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range resolver.UnhealthyAfter {
		_, err := r.LookupTXT(context.Background(), "a.test")
		if _, ok := err.(*net.DNSError); !ok || !resolver.IsTransport(err) || !resolver.IsTemporary(err) {
			t.Fatalf("closed port: want a temporary *net.DNSError that IsTransport, got %T %v", err, err)
		}
	}
	if r.Healthy() {
		t.Fatal("a closed port left the resolver healthy")
	}
}

// A caller that gives up says nothing about the server.
func TestCancelledQueryIsNotAFailure(t *testing.T) {
	srv := dnstest.New(t, zone...)
	srv.SetDelay("slow.test", 2*time.Second)
	r := newResolver(t, srv, time.Second)
	for range resolver.UnhealthyAfter {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		r.Exchange(ctx, "slow.test", dns.TypeA)
		cancel()
	}
	if !r.Healthy() {
		t.Fatal("cancelled queries made the resolver unhealthy")
	}
}
