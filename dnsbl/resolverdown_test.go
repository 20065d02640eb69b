package dnsbl_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// deadResolver returns a resolver whose server port has nothing behind
// it: every query is refused, as when the local unbound is down.
func deadResolver(t *testing.T) *resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: dnstest.ClosedAddr(t), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestResolverDownIsNotListed: lists asked through a resolver that is
// down count as not answering. With every list failing the check errs,
// so checks.dnsbl.on_error decides, DUNNO by default: never a reject,
// never a deferral. Each failure is counted for metrics.
func TestResolverDownIsNotListed(t *testing.T) {
	cfg := dnsbl.DefaultConfig()
	lists("zen.test", "spamcop.test", "dbl.test=127.0.1.[2..99]")(&cfg)
	cfg.Lists[2].Kind = dnsbl.KindDomain
	obs := newObserver()
	c, err := dnsbl.New(cfg, deadResolver(t), dnsbl.Options{Observer: obs, Now: clocktest.New(t0).Now})
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler)},
		[]policy.Step{{Check: c, Timeout: 1500 * time.Millisecond, OnError: policy.DunnoAction}})
	for range 3 {
		st := req("192.0.2.10", "a@bad.example", "", "")
		d := eng.Evaluate(context.Background(), st.Req, st.Msg)
		if d.Action != policy.DunnoAction || len(d.Errors) != 1 || d.Facts.DNSScore != 0 {
			t.Fatalf("resolver down: answered %v (errors %v, score %v), want DUNNO by on_error",
				d.Action, d.Errors, d.Facts.DNSScore)
		}
		if k := d.Errors[0].Kind; k == policy.ErrorPermanent {
			t.Fatalf("resolver down is a %s failure, want temporary or timeout: %v", k, d.Errors[0].Err)
		}
	}
	for _, l := range []string{"zen.test", "spamcop.test", "dbl.test"} {
		if obs.get(obs.errors, l) == 0 {
			t.Errorf("%s: the failed lookups were not counted", l)
		}
	}
}

// panicky is an Exchanger that panics, standing for a bug below us.
type panicky struct{}

func (panicky) Exchange(context.Context, string, uint16) (*dns.Msg, error) { panic("bug") }

// TestLookupPanicIsAnError: a panic in a lookup (shared through
// singleflight, on its own goroutine) is the list's failure, not a crash.
func TestLookupPanicIsAnError(t *testing.T) {
	cfg := dnsbl.DefaultConfig()
	lists("zen.test", "spamcop.test")(&cfg)
	c, err := dnsbl.New(cfg, panicky{}, dnsbl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), req("192.0.2.10", "", "", ""))
	if pe := (*panics.Error)(nil); !errors.As(err, &pe) || !strings.Contains(string(pe.Stack), "panicky") {
		t.Fatalf("every lookup panicked: error %v, want one carrying the panic's stack", err)
	}
}

// panickyObserver panics when a query is reported, outside the
// singleflight function's own call.
type panickyObserver struct{}

func (panickyObserver) DNSQuery(string, time.Duration, error) { panic("observer bug") }
func (panickyObserver) DNSCacheHit(string)                    {}
func (panickyObserver) DNSPaused(string)                      {}
func (panickyObserver) DNSListHealth(map[string]bool)         {}
func (panickyObserver) DNSLists([]string)                     {}

func TestObserverPanicIsAnError(t *testing.T) {
	f := newFixture(t, lists("zen.test"))
	cfg := dnsbl.DefaultConfig()
	lists("zen.test")(&cfg)
	r, err := resolver.New(resolver.Config{Server: f.srv.Addr(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnsbl.New(cfg, r, dnsbl.Options{Observer: panickyObserver{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(context.Background(), req("192.0.2.10", "", "", "")); err == nil {
		t.Fatal("want an error from a panicking lookup")
	}
}
