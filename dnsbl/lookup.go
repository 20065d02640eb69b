package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
)

// query is one name to ask and the list it asks.
type query struct {
	name string
	z    *zoneState
}

// answerSet is the addresses each query got, by its index; answered[i]
// is false for a query with no usable answer (a listing is addresses, an
// unlisted name none).
type answerSet struct {
	addrs    [][]netip.Addr
	answered []bool
	until    time.Time // when the first of the cached answers expires
}

// resolveAll answers every query, from the cache where possible and
// otherwise in parallel, and returns within ctx. The error is set only if
// none answered.
func (c *Checker) resolveAll(ctx context.Context, qs []query) (answerSet, error) {
	out, misses := c.fromCache(qs, c.now())
	c.countHits(qs, out)
	if len(misses) == 0 {
		return out, nil
	}
	type result struct {
		i     int
		addrs []netip.Addr
		err   error
	}
	ch := make(chan result, len(misses))
	for _, i := range misses {
		go func() {
			// A panic (in the DNS library, an observer) is this list's
			// failure, never the daemon's crash; it carries its stack
			// to the engine, which logs it.
			var addrs []netip.Addr
			err := panics.Call(func() (err error) {
				addrs, err = c.lookup(ctx, qs[i].z, qs[i].name)
				return err
			})
			if pe := (*panics.Error)(nil); errors.As(err, &pe) {
				err = fmt.Errorf("dnsbl: %s: lookup panicked: %w", qs[i].z.name, pe)
			}
			ch <- result{i, addrs, err}
		}()
	}
	var errs []error
	for range misses {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		out.addrs[r.i], out.answered[r.i] = r.addrs, true
	}
	if len(errs) == len(qs) {
		return answerSet{}, fmt.Errorf("dnsbl: no list answered: %w", errors.Join(errs...))
	}
	return out, nil
}

// fromCache is the cached answers of qs at now, with the time the first
// of them expires, and the indexes of the queries that are not cached.
// countHits counts the answers as the cache hits they were.
func (c *Checker) fromCache(qs []query, now time.Time) (answerSet, []int) {
	out := answerSet{addrs: make([][]netip.Addr, len(qs)), answered: make([]bool, len(qs))}
	var misses []int
	for i, q := range qs {
		if a, ok := c.cache.get(q.name, now); ok {
			out.addrs[i], out.answered[i] = a.addrs, true
			if out.until.IsZero() || a.expires.Before(out.until) {
				out.until = a.expires
			}
		} else {
			misses = append(misses, i)
		}
	}
	return out, misses
}

// countAllHits counts every query as a cache hit: Quick's kept score,
// made from cached answers that have not expired.
func (c *Checker) countAllHits(qs []query) {
	for _, q := range qs {
		c.obs.DNSCacheHit(q.z.name)
	}
}

func (c *Checker) countHits(qs []query, hits answerSet) {
	for i, q := range qs {
		if hits.answered[i] {
			c.obs.DNSCacheHit(q.z.name)
		}
	}
}

// lookup asks one name that is not cached. Concurrent requests for the
// same name share one query; the query runs to its own timeout even if
// this caller gives up, so its answer still reaches the cache.
func (c *Checker) lookup(ctx context.Context, z *zoneState, qname string) ([]netip.Addr, error) {
	if z.paused(c.now()) {
		return nil, fmt.Errorf("%w: %s", ErrPaused, z.name)
	}
	ch := c.flight.DoChan(qname, func() (v any, err error) {
		// singleflight re-panics a DoChan panic on a goroutine of its
		// own, where nothing can recover it: it must be caught here.
		err = panics.Call(func() (err error) {
			v, err = c.fetch(context.WithoutCancel(ctx), z, qname)
			return err
		})
		if pe := (*panics.Error)(nil); errors.As(err, &pe) {
			v, err = nil, fmt.Errorf("dnsbl: %s: lookup panicked: %w", z.name, pe)
		}
		return v, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]netip.Addr), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("dnsbl: %s: %w", z.name, ctx.Err())
	}
}

// fetch sends the A query, caches the answer, and counts the list's health.
func (c *Checker) fetch(ctx context.Context, z *zoneState, qname string) ([]netip.Addr, error) {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	start, failed := time.Now(), z.selfCheck.failed.Load()
	msg, err := c.ex.Exchange(ctx, qname, dns.TypeA)
	c.obs.DNSQuery(z.name, time.Since(start), err)
	if err != nil {
		err = z.redact(err)
		c.health(z, err)
		return nil, err
	}
	addrs, ttl := readA(msg)
	if now := c.now(); z.keep(failed) {
		c.cache.put(qname, answer{addrs: addrs, expires: now.Add(c.clamp(ttl))}, now)
	}
	c.health(z, errorAnswer(addrs))
	return addrs, nil
}

// errorAnswer reports an answer made only of error codes: the list is
// telling us it will not answer (rate limit, public resolver, bad key),
// which counts toward pausing it like a timeout does.
func errorAnswer(addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	var why string
	for _, a := range addrs {
		if why = errorCode(a); why == "" {
			return nil
		}
	}
	return fmt.Errorf("%w: %s: %s", errNoAnswer, addrs[0], why)
}

// health logs a failure, counts it and pauses the list when it keeps
// failing; a success clears the count.
func (c *Checker) health(z *zoneState, err error) {
	if err != nil {
		c.log.Warn("dnsbl: list failed", slog.String("list", z.name),
			slog.String("error", strings.ReplaceAll(err.Error(), z.zone, z.name)))
	}
	if z.record(err == nil, c.now(), c.cfg.PauseAfter, c.cfg.PauseFor) {
		c.log.Warn("dnsbl: list paused after repeated failures", slog.String("list", z.name),
			slog.Int("failures", c.cfg.PauseAfter), slog.Duration("for", c.cfg.PauseFor))
		c.obs.DNSPaused(z.name)
	}
}

// readA returns the A records and the TTL to cache them for: the lowest
// record TTL, or for a negative answer the SOA's negative TTL (RFC 2308
// §5, as Postfix's dnsblog does); 0 when there is none (clamped later).
func readA(m *dns.Msg) ([]netip.Addr, uint32) {
	var addrs []netip.Addr
	ttl := ^uint32(0)
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				addrs = append(addrs, ip)
				ttl = min(ttl, a.Hdr.Ttl)
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, ttl
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return nil, min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return nil, 0
}

func (c *Checker) clamp(ttl uint32) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, c.cfg.MinTTL), c.cfg.MaxTTL)
}

// txt returns the TXT record a list publishes for a listing, cached like
// the A answers. Failures only cost the reply its reason.
func (c *Checker) txt(ctx context.Context, z *zoneState, qname string) string {
	key := "TXT " + qname
	if a, ok := c.cache.get(key, c.now()); ok {
		return a.txt
	}
	failed := z.selfCheck.failed.Load()
	msg, err := c.ex.Exchange(ctx, qname, dns.TypeTXT)
	if err != nil {
		c.log.Debug("dnsbl: no TXT reason", slog.String("list", z.name),
			slog.String("error", z.redact(err).Error()))
		return ""
	}
	var txt string
	ttl := ^uint32(0)
	for _, rr := range msg.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			txt, ttl = resolver.UnescapeTXT(strings.Join(t.Txt, "")), t.Hdr.Ttl
			break
		}
	}
	if txt == "" {
		ttl = 0
	}
	if now := c.now(); z.keep(failed) {
		c.cache.put(key, answer{txt: txt, expires: now.Add(c.clamp(ttl))}, now)
	}
	return txt
}
