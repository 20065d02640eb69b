// Package dnsbl scores a client by DNS lists: IP blocklists (DNSBL),
// domain blocklists (RHSBL) asked about the sender domain, HELO name and
// verified client name, and allowlists (DNSWL, negative weights). Lists
// are configured as in postscreen_dnsbl_sites, queried in parallel under
// one deadline, and their answers cached by TTL; a score at or above the
// threshold rejects with a reply naming the list by its display name.
//
// A query for 2.0.0.127 in zen.spamhaus.org asks the A record of
// 2.0.0.127.zen.spamhaus.org: NXDOMAIN means not listed, an address in
// 127.0.0.0/8 is a listing code (RFC 5782 §2.1), and some such addresses
// are error reports instead (see errorCode).
//
// Every few minutes each list is also asked about its RFC 5782 §5 test
// points; one that fails them (a list that lists everyone, one refusing
// us with an error code) is ignored until it passes again (selfcheck.go).
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Exchanger sends one DNS query; *resolver.Resolver is the implementation.
// NXDOMAIN must come back as a message, not an error.
type Exchanger interface {
	Exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

// Name is the check's name in the config, the logs and the metrics.
const Name = "dnsbl"

// Options are the collaborators of a Checker; zero values are usable.
type Options struct {
	Logger   *slog.Logger
	Now      func() time.Time // the cache clock
	Observer Observer
	// Tick makes the self-check's ticker: a channel receiving every d, and
	// its stop. Default: time.NewTicker; tests drive their own.
	Tick func(d time.Duration) (<-chan time.Time, func())
}

// ErrPaused is returned for a list skipped after repeated failures.
var ErrPaused = errors.New("dnsbl: list paused after repeated failures")

// Checker is the "dnsbl" policy check. Safe for concurrent use; build a
// new one on reload (the cache goes with it).
type Checker struct {
	cfg     Config
	entries []*entry
	zones   map[string]*zoneState
	order   []*zoneState // the zones in configuration order
	ex      Exchanger
	log     *slog.Logger
	now     func() time.Time
	obs     Observer
	tick    func(time.Duration) (<-chan time.Time, func())
	cache   *cache
	plans   plans
	flight  singleflight.Group
}

// New validates cfg and returns the check.
func New(cfg Config, ex Exchanger, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	entries, _ := cfg.entries() // validated above
	c := &Checker{cfg: cfg, entries: entries, ex: ex, log: opt.Logger, now: opt.Now, obs: opt.Observer, tick: opt.Tick,
		zones: map[string]*zoneState{}, cache: newCache(cfg.CacheSize)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	if c.tick == nil {
		c.tick = realTicker
	}
	for _, e := range entries {
		if c.zones[e.zone] == nil {
			c.zones[e.zone] = &zoneState{zone: e.zone, name: e.name}
			c.order = append(c.order, c.zones[e.zone])
		}
		c.initSelfCheck(c.zones[e.zone], e)
	}
	names := make([]string, len(c.order))
	for i, z := range c.order {
		names[i] = z.name
	}
	c.obs.DNSLists(names)
	return c, nil
}

// Name is the check's name in configuration and logs.
func (c *Checker) Name() string { return Name }

// Check scores the request and records the score in st.Facts, where
// greylisting reads it. It rejects at or above the threshold and passes
// otherwise. It returns an error only when no list answered at all, so
// that the step's on_error decides what a DNS outage means; the error is
// marked temporary when the lists failed for a reason that passes (a
// timeout, SERVFAIL, a pause).
func (c *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	p := c.planFor(st.Req)
	if len(p.qs) == 0 {
		return policy.Pass(""), nil
	}
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	answers, err := c.resolveAll(ctx, p.qs)
	if err != nil {
		return policy.Result{}, classify(err)
	}
	sc := score(p.pairs, answers)
	st.Facts.DNSScore, st.Facts.DNSListed, st.Facts.DNSAllow = sc.total, sc.listed, sc.allow
	if sc.total < c.cfg.RejectThreshold || sc.best == nil {
		return policy.Pass(sc.reason()), nil
	}
	return policy.Result{Action: c.reply(ctx, sc.best), Reason: sc.reason()}, nil
}

// Quick implements policy.QuickCheck: when every list's answer is
// cached, the request is scored without a query. A score that rejects is
// left to Check, which may fetch the list's TXT record for the reply.
// A plan's passing score is kept until the first of the answers it came
// from expires, so a busy client is scored once per TTL (plans.go).
func (c *Checker) Quick(st *policy.State) (policy.Result, bool) {
	p := c.planFor(st.Req)
	if len(p.qs) == 0 {
		return policy.Pass(""), true
	}
	now := c.now()
	if ps := p.passed.Load(); ps != nil && now.Before(ps.until) {
		c.countAllHits(p.qs)
		return ps.apply(st), true
	}
	answers, misses := c.fromCache(p.qs, now)
	if len(misses) > 0 {
		return policy.Result{}, false
	}
	sc := score(p.pairs, answers)
	if sc.total >= c.cfg.RejectThreshold && sc.best != nil {
		return policy.Result{}, false
	}
	c.countHits(p.qs, answers)
	ps := &passing{res: policy.Pass(sc.reason()), total: sc.total,
		listed: slices.Clip(sc.listed), allow: sc.allow, until: answers.until}
	p.passed.Store(ps)
	return ps.apply(st), true
}

var _ policy.QuickCheck = (*Checker)(nil)

// classify marks a failure of every list as temporary when the failures
// were (resolver.IsTemporary; a paused list is one that kept failing so).
func classify(err error) error {
	if errors.Is(err, ErrPaused) || resolver.IsTemporary(err) {
		return policy.Temporary(err)
	}
	return err
}

// deadline applies dnsbl.timeout, when set, as a cap on ctx's deadline
// (the step's share of the request budget).
func (c *Checker) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, c.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

// pair is one entry asked about one subject.
type pair struct {
	e     *entry
	s     *subject // in the request's subjects
	qname string
	q     int // the index of qname in plan's queries
}

// plan lists what to ask: every entry against every subject it applies
// to. Entries sharing a zone share query names, so each name is asked once.
// A list failing its self-check is left out: not listed (selfcheck.go).
func (c *Checker) plan(subs []subject) ([]pair, []query) {
	pairs := make([]pair, 0, len(c.entries)*len(subs))
	qs := make([]query, 0, len(c.entries)*len(subs))
	for _, e := range c.entries {
		if !c.zones[e.zone].usable() {
			continue
		}
		for i := range subs {
			s := &subs[i]
			if s.kind != e.kind || (s.kind == KindDomain && !e.asks(s.id)) {
				continue
			}
			name := s.key + "." + e.zone
			if len(name) > 253 {
				continue
			}
			q := slices.IndexFunc(qs, func(q query) bool { return q.name == name })
			if q < 0 {
				q, qs = len(qs), append(qs, query{name, c.zones[e.zone]})
			}
			pairs = append(pairs, pair{e, s, name, q})
		}
	}
	return pairs, qs
}

// reply renders the reject action for the best hit, with the list's TXT
// record when it publishes one and it arrives within the deadline.
func (c *Checker) reply(ctx context.Context, h *hit) policy.Action {
	txt := c.txt(ctx, c.zones[h.e.zone], h.qname)
	v := replyVars{list: h.e.name, class: h.s.class, what: h.s.what, code: h.code.String(),
		txt: sanitize(txt, h.e.zone, h.e.name)}
	a, err := renderReply(c.cfg.RejectReply, v)
	if err != nil {
		// The template was validated with a TXT record, so only odd TXT
		// content, or none ("450 {txt}"), gets here.
		v.txt = ""
		if a, err = renderReply(c.cfg.RejectReply, v); err != nil {
			a, ok := policy.Fallback(c.cfg.RejectReply, "blocked using "+h.e.name)
			if !ok {
				a = policy.Action{Verb: policy.Reject, Text: "blocked using " + h.e.name}
			}
			return a
		}
	}
	return a
}

// sanitize makes a TXT record safe for an SMTP reply: printable ASCII on
// one line (Postfix refuses a non-UTF-8 action with smtputf8_enable), no
// zone name (it may hold a DQS key), and short.
func sanitize(txt, zone, name string) string {
	var b strings.Builder
	space := false
	for _, r := range txt {
		if r <= ' ' || r > '~' {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	out := replaceFold(b.String(), zone, name)
	if len(out) > 200 {
		out = out[:200]
	}
	return out
}

// replaceFold replaces old in s ignoring ASCII case; s is ASCII here, so
// lowercasing keeps byte offsets.
func replaceFold(s, old, new string) string {
	lower := strings.ToLower(s)
	var b strings.Builder
	for {
		i := strings.Index(lower, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(new)
		s, lower = s[i+len(old):], lower[i+len(old):]
	}
}

// redactedError hides the zone (which may hold a DQS key) from an error's
// text while keeping it inspectable with errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (z *zoneState) redact(err error) error {
	msg := strings.ReplaceAll(err.Error(), z.zone, z.name)
	return &redactedError{msg: fmt.Sprintf("dnsbl: %s: %s", z.name, msg), err: err}
}
