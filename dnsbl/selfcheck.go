package dnsbl

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// The self-check asks every list about its test points (RFC 5782 §5):
// "IPv4-based DNSxLs MUST contain an entry for 127.0.0.2 for testing
// purposes" and "MUST NOT contain an entry for 127.0.0.1"; domain lists
// must list TEST and must not list INVALID. A list that fails is broken in
// the way that hurts most: shut down with a wildcard record, it lists
// everyone; asked through a public resolver, Spamhaus answers every query
// with 127.255.255.254. Such a list is ignored (its lookups are skipped
// and count as not listed) until it passes again. That holds for
// allowlists too: an allowlist that lists everyone would exempt everyone.
//
// IP lists are probed at the IPv4 test points only: every IP list is
// asked about IPv4 clients. A list of IPv6 addresses alone (whose test
// points RFC 5782 §5 puts at ::FFFF:7F00:2 and ::FFFF:7F00:1) should set
// self_check: false.

// HealthState is a list's standing with the self-check.
type HealthState string

const (
	NotChecked HealthState = "not checked" // self_check: false, or the self-check is off
	Unknown    HealthState = "unknown"     // no conclusive probe yet: the list is used
	Healthy    HealthState = "healthy"
	Unhealthy  HealthState = "unhealthy" // ignored until it passes again
)

// ListHealth is one list's self-check state, for /readyz and config check.
type ListHealth struct {
	List  string // the display name
	State HealthState
	// Why: for Unhealthy, the test and the answer that failed it; for
	// NotChecked, the setting; for Unknown, the last probe's error.
	Why string
}

func (h ListHealth) String() string {
	if h.Why == "" {
		return h.List + ": " + string(h.State)
	}
	return h.List + ": " + string(h.State) + ": " + h.Why
}

// selfCheckState is a zone's part in the self-check. sick is read on every
// request; the rest is under zoneState.mu.
type selfCheckState struct {
	on    bool
	off   string // why it is not checked
	kinds []Kind // what the zone's entries ask about: the test points to use
	sick  atomic.Bool
	// failed counts the times the zone was found failing; a lookup keeps
	// its answer only if it did not move while the query was out
	// (zoneState.keep): the cache is emptied of the zone then (dropZone),
	// and an answer arriving after that could list everyone for its TTL.
	failed atomic.Uint64

	state   HealthState
	why     string
	lastErr string
}

// testPoint is one name the self-check asks a list about.
type testPoint struct {
	key   string // the query name's prefix
	shown string // as logs write it
}

// testPoints returns the entry a list of kind k must have and the one it
// must not have (RFC 5782 §5; TEST and INVALID are the names RFC 2606
// reserves).
func testPoints(k Kind) (must, mustNot testPoint) {
	if k == KindDomain {
		return testPoint{"test", "test"}, testPoint{"invalid", "invalid"}
	}
	return testPoint{"2.0.0.127", "127.0.0.2"}, testPoint{"1.0.0.127", "127.0.0.1"}
}

// initSelfCheck sets up the zone of e for the self-check; New calls it for
// every entry.
func (c *Checker) initSelfCheck(z *zoneState, e *entry) {
	s := &z.selfCheck
	switch {
	case !e.selfCheck:
		s.state, s.off = NotChecked, "self_check: false"
	case c.cfg.SelfCheckInterval <= 0:
		s.state, s.off = NotChecked, "dnsbl.self_check_interval is 0"
	default:
		s.on, s.state = true, Unknown
	}
	for _, k := range s.kinds {
		if k == e.kind {
			return
		}
	}
	s.kinds = append(s.kinds, e.kind)
}

// usable reports whether the zone may be asked for a request: not while
// it fails its self-check.
func (z *zoneState) usable() bool { return !z.selfCheck.sick.Load() }

func (z *zoneState) health() ListHealth {
	z.mu.Lock()
	defer z.mu.Unlock()
	s := &z.selfCheck
	h := ListHealth{List: z.name, State: s.state, Why: s.why}
	switch s.state {
	case NotChecked:
		h.Why = s.off
	case Unknown:
		h.Why = s.lastErr
	}
	return h
}

// Health returns every list's self-check state, in configuration order. It
// does no I/O, so /readyz may call it on every probe.
func (c *Checker) Health() []ListHealth {
	out := make([]ListHealth, 0, len(c.order))
	for _, z := range c.order {
		out = append(out, z.health())
	}
	return out
}

// StartSelfCheck probes every list at once and then every
// dnsbl.self_check_interval, on a goroutine of its own, until ctx ends or
// stop is called; stop waits for the goroutine. With the self-check off
// it starts nothing.
func (c *Checker) StartSelfCheck(ctx context.Context) (stop func()) {
	if !c.anySelfCheck() {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	tick, stopTick := c.tick(c.cfg.SelfCheckInterval)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopTick()
		for {
			c.probeSafely(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

func (c *Checker) anySelfCheck() bool {
	for _, z := range c.order {
		if z.selfCheck.on {
			return true
		}
	}
	return false
}

// probeSafely is Probe for the background goroutine: a panic (in the DNS
// library, an observer) costs one probe, never the daemon.
func (c *Checker) probeSafely(ctx context.Context) {
	if err := panics.Call(func() error { c.Probe(ctx); return nil }); err != nil {
		c.log.Error("dnsbl: self-check panicked", "err", err)
	}
}

// Probe runs the self-check once, every list in parallel, and returns
// every list's state. A probe that gets no answer (our resolver down, a
// timeout, SERVFAIL) proves nothing about the list: it keeps its state.
func (c *Checker) Probe(ctx context.Context) []ListHealth {
	var wg sync.WaitGroup
	for _, z := range c.order {
		if !z.selfCheck.on {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := panics.Call(func() error {
				why, err := c.probeZone(ctx, z)
				c.judge(ctx, z, why, err)
				return nil
			}); err != nil {
				c.log.Error("dnsbl: self-check panicked", slog.String("list", z.name), "err", err)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		c.obs.DNSListHealth(c.verdicts())
	}
	return c.Health()
}

// probeZone asks the zone's test points and says why it fails them, or ""
// if it passes. An error means no conclusion.
func (c *Checker) probeZone(ctx context.Context, z *zoneState) (string, error) {
	for _, k := range z.selfCheck.kinds {
		must, mustNot := testPoints(k)
		addrs, err := c.probeQuery(ctx, z, must)
		if err != nil {
			return "", err
		}
		if why := badTestEntry(addrs, must); why != "" {
			return why, nil
		}
		if addrs, err = c.probeQuery(ctx, z, mustNot); err != nil {
			return "", err
		}
		if len(addrs) > 0 {
			return fmt.Sprintf("answered %s for %s, which RFC 5782 §5 says no list may contain",
				joinAddrs(addrs), mustNot.shown), nil
		}
	}
	return "", nil
}

// badTestEntry says why the answer for the entry every list must have is
// not a listing: there is none, or it is an error code (errorCode). A code
// the list's filter leaves out is not a failure: a test entry need not
// carry a code the usual filter selects (dnswl.org's, at
// 2.0.0.127.list.dnswl.org, answers 127.0.10.0, trust 0, which the filter
// 127.0.[0..255].[1..3] leaves out).
func badTestEntry(addrs []netip.Addr, p testPoint) string {
	if len(addrs) == 0 {
		return fmt.Sprintf("no entry for %s, which RFC 5782 §5 says every list must have", p.shown)
	}
	for _, a := range addrs {
		if why := errorCode(a); why != "" {
			return fmt.Sprintf("answered %s for %s: %s", a, p.shown, why)
		}
	}
	return ""
}

// probeQuery asks one test point, bypassing the cache and the pause: the
// probe is what finds out whether the list may be used.
func (c *Checker) probeQuery(ctx context.Context, z *zoneState, p testPoint) ([]netip.Addr, error) {
	start := time.Now()
	msg, err := c.ex.Exchange(ctx, p.key+"."+z.zone, dns.TypeA)
	c.obs.DNSQuery(z.name, time.Since(start), err)
	if err != nil {
		return nil, z.redact(err)
	}
	addrs, _ := readA(msg)
	return addrs, nil
}

// judge records a probe's outcome and logs a change of state, once: a
// list turning unhealthy with the answer it gave, a list recovering.
func (c *Checker) judge(ctx context.Context, z *zoneState, why string, err error) {
	if err != nil {
		if ctx.Err() == nil {
			z.inconclusive(err)
			c.log.Debug("dnsbl: self-check got no answer, the list keeps its state",
				slog.String("list", z.name), slog.String("error", err.Error()))
		}
		return
	}
	was := z.setHealth(why)
	switch {
	case why != "" && was != Unhealthy:
		// Answers cached before the probe caught it may list everyone.
		c.cache.dropZone(z.zone)
		c.log.Warn("dnsbl: list failed its self-check, ignored until it passes",
			slog.String("list", z.name), slog.String("answer", why))
	case why == "" && was == Unhealthy:
		c.log.Warn("dnsbl: list passes its self-check again, in use", slog.String("list", z.name))
	case why == "" && was == Unknown:
		c.log.Debug("dnsbl: list passes its self-check", slog.String("list", z.name))
	}
}

// setHealth sets the verdict of a conclusive probe ("" passes) and
// returns the previous state.
func (z *zoneState) setHealth(why string) HealthState {
	z.mu.Lock()
	defer z.mu.Unlock()
	s := &z.selfCheck
	was := s.state
	s.state, s.why, s.lastErr = Healthy, "", ""
	if why != "" {
		s.state, s.why = Unhealthy, why
		if was != Unhealthy {
			s.failed.Add(1) // the probe then empties the cache of the zone
		}
	}
	s.sick.Store(why != "")
	return was
}

// keep reports whether an answer to a query sent when the zone's failure
// count was failed may be cached: the zone was not found failing since.
func (z *zoneState) keep(failed uint64) bool { return z.selfCheck.failed.Load() == failed }

func (z *zoneState) inconclusive(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.selfCheck.lastErr = err.Error()
}

// verdicts maps each conclusively probed list to whether it passes.
func (c *Checker) verdicts() map[string]bool {
	out := map[string]bool{}
	for _, h := range c.Health() {
		if h.State == Healthy || h.State == Unhealthy {
			out[h.List] = h.State == Healthy
		}
	}
	return out
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// realTicker is the self-check's clock outside tests.
func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
