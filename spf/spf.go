// Package spf is the "spf" policy check: it evaluates the sender's SPF
// policy (RFC 7208) with blitiri.com.ar/go/spf once per message, maps the
// result to a reply through a configurable table, records the result for
// greylisting, and queues Received-SPF and Authentication-Results headers.
// It checks the HELO identity as well as MAIL FROM (RFC 7208 §2.3),
// explains a fail with the domain's exp= (§6.2, explain.go), and holds
// every record it read to the grammar of §12 (strict.go).
package spf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	gospf "blitiri.com.ar/go/spf"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Name is the check's name in the config, the logs and the metrics.
const Name = "spf"

// Result is an SPF result. It is policy.SPFResult, so the result this
// check records in policy.Facts is the value greylisting reads.
type Result = policy.SPFResult

// outcomeKey keeps the message's outcome for its other recipients.
var outcomeKey = policy.NewMessageKey[*outcome]("spf")

// ErrResolver classifies an evaluation that failed because our own DNS
// resolver (dns.server) gave no response: a timeout, a refused
// connection. That is our fault, not the sender's, so the check returns
// an error and checks.spf.on_error decides (DUNNO by default) instead of
// the temperror action deferring every message. A sender domain whose
// servers fail (our resolver answers SERVFAIL) is still temperror
// (RFC 7208 §2.6.6).
var ErrResolver = errors.New("spf: our DNS resolver did not answer")

// Options are the collaborators of a Checker.
type Options struct {
	Logger *slog.Logger
}

// Checker is the "spf" policy check. Safe for concurrent use.
type Checker struct {
	cfg      Config
	resolver gospf.DNSResolver
	receiver string
	authserv string
	helos    *cache[heloKey, *evaluation]
	senders  *cache[senderKey, verdict]
	// outcomes are the outcomes cachedOutcome built, until the first of
	// the evaluations they were built from expires: a repeated sender
	// costs a lookup, not its headers and action again.
	outcomes *cache[memoKey, *outcome]
	log      *slog.Logger
	// fixed are the actions whose templates fill in nothing ("DUNNO",
	// most of them), parsed once instead of per message.
	fixed map[string]policy.Action
}

// New validates cfg and returns the check. resolver is normally a
// *resolver.Resolver, whose errors go/spf classifies correctly (a timeout
// is TempError); a plain *net.Resolver works too.
func New(cfg Config, resolver gospf.DNSResolver, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, resolver: resolver, receiver: headerName(cfg.receiver()), log: opt.Logger,
		helos:    newCache[heloKey, *evaluation](heloTTL, cacheMax),
		senders:  newCache[senderKey, verdict](senderTTL, cacheMax),
		outcomes: newCache[memoKey, *outcome](senderTTL, cacheMax)}
	c.authserv = headerName(cfg.authservID(c.receiver))
	c.fixed = map[string]policy.Action{}
	for key := range defaultActions() {
		c.fixAction(key)
	}
	c.fixAction(HeloFail)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Name is the check's name in configuration and logs.
func (c *Checker) Name() string { return Name }

// outcome is one message's SPF evaluation, reused for every recipient.
type outcome struct {
	result Result // of the identity that answers
	// vouches: the pass names this client, not everyone. A policy that
	// also passes a probe address (+all, ip4:0.0.0.0/0) authorizes any
	// host, so its domain must not key pool-aware greylisting: every bot
	// sending as that domain would share one key and one retry would pass
	// them all.
	vouches bool
	vars    vars // of the identity that answers
	headers []string
	action  policy.Action
	err     error // wraps ErrResolver: no result, on_error decides
}

// Check evaluates SPF for the message (once; later recipients reuse the
// outcome) and answers the configured action for the result.
func (c *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	return c.apply(st, c.outcome(ctx, st))
}

// Quick implements policy.QuickCheck: a later recipient reuses its
// message's outcome, and a message whose HELO and MAIL FROM verdicts are
// both cached is decided from them. A fail is left to Check, which
// expands its explanation again for this message (reuse).
func (c *Checker) Quick(st *policy.State) (policy.Result, bool) {
	o, ok := outcomeKey.Get(st.Msg)
	if !ok {
		ip := st.Req.ClientAddress.Unmap()
		if ip.IsValid() {
			if o, ok = c.cachedOutcome(st.Req, ip); !ok {
				return policy.Result{}, false
			}
			outcomeKey.Set(st.Msg, o)
		}
	}
	if o != nil && o.err != nil {
		return policy.Result{}, false // Check returns the error, for on_error
	}
	res, _ := c.apply(st, o)
	return res, true
}

var _ policy.QuickCheck = (*Checker)(nil)

// Failed implements policy.FailureCheck: a message SPF could not check
// (the resolver failed, or the step ran out of time) has no answer from
// it, and on_error decides. For the later checks it is a temperror, a
// transient (generally DNS) error (RFC 7208 §2.6.6): greylisting's pool
// key cannot be known (greylist.Checker unverified).
func (c *Checker) Failed(st *policy.State) (policy.Result, bool) {
	st.Facts.SPF = policy.SPFTempError
	return policy.Result{}, false
}

var _ policy.FailureCheck = (*Checker)(nil)

// apply answers the request from the message's outcome, nil for a client
// without an address, and records its facts and headers.
func (c *Checker) apply(st *policy.State, o *outcome) (policy.Result, error) {
	if o == nil {
		return policy.Pass("spf: no client address"), nil
	}
	if o.err != nil {
		return policy.Result{}, o.err
	}
	st.Facts.SPF = o.result
	// A bounce (the null sender) is checked as postmaster@ its HELO name
	// (RFC 7208 §2.4), and a HELO policy names one host (§2.3 recommends
	// "v=spf1 a -all" for it): a pool's hosts would each get their own
	// key, and a retry from a neighbour would be greylisted again. Its
	// triplet keys by network, as without SPF.
	if o.result == policy.SPFPass && o.vouches && st.Req.Sender != "" {
		st.Facts.SPFDomain = o.vars.domain
	}
	for _, h := range o.headers {
		st.Msg.AddHeader(h) // ignored once queued or sent; nil Msg holds nothing
	}
	return policy.Result{Action: o.action, Reason: "spf " + string(o.result) + " " + o.vars.identity + "=" + o.vars.domain}, nil
}

func (c *Checker) outcome(ctx context.Context, st *policy.State) *outcome {
	if o, ok := outcomeKey.Get(st.Msg); ok {
		return o
	}
	ip := st.Req.ClientAddress.Unmap()
	if !ip.IsValid() {
		return nil
	}
	o := c.evaluate(ctx, st.Req, ip, st.Now)
	outcomeKey.Set(st.Msg, o)
	return o
}

// evaluation is one identity's SPF result.
type evaluation struct {
	vars    vars
	result  Result
	vouches bool
	err     error // wraps ErrResolver
}

// evaluate checks the HELO identity and the MAIL FROM identity (RFC 7208
// §2.3: a HELO fail may decide alone; §2.4: the null sender's MAIL FROM
// identity is the HELO one, so it is checked once). The two run side by
// side under one deadline, the step's capped by spf.timeout: one after
// the other, a slow HELO domain would leave MAIL FROM too little of the
// share, and the answer would depend on whether the HELO result was
// already cached. Running MAIL FROM when HELO fails costs a lookup, never
// a verdict: HELO's fail still decides.
func (c *Checker) evaluate(ctx context.Context, r *policy.Request, ip netip.Addr, now time.Time) *outcome {
	if c.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	var helo *evaluation
	var helos chan *evaluation
	if r.SenderDomain() != "" {
		if e, ok := c.heloCached(r, ip); ok {
			helo = e
		} else {
			helos = make(chan *evaluation, 1)
			go c.heloAside(ctx, r, ip, now, helos)
		}
	}
	v := identity(r, ip)
	v.now = now
	mf := c.mailFromCheck(ctx, v, ip)
	if helos != nil {
		helo = <-helos
	}
	o := c.combine(helo, mf, r.Sender)
	return o
}

// cachedOutcome is evaluate from the caches alone: false when either
// identity would need a lookup, or MAIL FROM's verdict is a fail. An
// outcome built once is shared by the messages of the same client, HELO
// name and sender (c.outcomes); nothing changes an outcome once built.
func (c *Checker) cachedOutcome(r *policy.Request, ip netip.Addr) (*outcome, bool) {
	mk := memoKey{ip, r.HeloName, r.Sender}
	if o, ok := c.outcomes.get(mk); ok {
		return o, true
	}
	var helo *evaluation
	var until time.Time // the first expiry of what the outcome is built from
	if r.SenderDomain() != "" {
		e, exp, ok := c.heloCachedUntil(r, ip)
		if !ok {
			return nil, false
		}
		helo, until = e, exp
	}
	v := identity(r, ip)
	vd, exp, ok := c.cachedVerdict(ip, v)
	if !ok || vd.result == policy.SPFFail {
		return nil, false
	}
	if until.IsZero() || exp.Before(until) {
		until = exp
	}
	mf := &evaluation{vars: v.owned(), result: vd.result, vouches: vd.vouches}
	mf.vars.result = string(vd.result)
	o := c.combine(helo, mf, r.Sender)
	c.outcomes.putUntil(memoKey{ip, strings.Clone(mk.helo), strings.Clone(mk.sender)}, o, until)
	return o, true
}

// combine is the message's outcome from its two evaluations: a HELO fail
// that rejects decides alone (RFC 7208 §2.3), else MAIL FROM does.
func (c *Checker) combine(helo, mf *evaluation, sender string) *outcome {
	o := &outcome{}
	if helo != nil && helo.result == policy.SPFFail && !c.answer(helo).IsDunno() {
		o.result, o.vars, o.action = helo.result, helo.vars, c.answer(helo)
		return o
	}
	o.result, o.vars, o.vouches, o.err = mf.result, mf.vars, mf.vouches, mf.err
	if o.err == nil {
		o.action = c.answer(mf)
		o.headers = c.headers(helo, mf, sender)
	}
	return o
}

// heloAside runs heloCheck on its own goroutine and sends its evaluation,
// nil if it panicked: go/spf is foreign code, and a panic there must not
// end the process.
func (c *Checker) heloAside(ctx context.Context, r *policy.Request, ip netip.Addr, now time.Time, out chan<- *evaluation) {
	var e *evaluation
	if err := panics.Call(func() error { e = c.heloCheck(ctx, r, ip, now); return nil }); err != nil {
		c.log.Error("spf: HELO evaluation panicked", "err", err)
	}
	out <- e
}

// answer renders the action for an evaluation's result.
func (c *Checker) answer(e *evaluation) policy.Action {
	if e.vars.identity == "helo" && e.result == policy.SPFFail {
		return c.action(e.vars, HeloFail)
	}
	return c.action(e.vars, e.vars.result)
}

// heloCached returns the HELO identity's evaluation when it needs no
// lookup: kept by heloCheck, or nil for a HELO name SPF cannot check.
func (c *Checker) heloCached(r *policy.Request, ip netip.Addr) (*evaluation, bool) {
	e, _, ok := c.heloCachedUntil(r, ip)
	return e, ok
}

// heloCachedUntil is heloCached, with when the kept evaluation expires
// (zero for a HELO name SPF cannot check, which never does).
func (c *Checker) heloCachedUntil(r *policy.Request, ip netip.Addr) (*evaluation, time.Time, bool) {
	v := heloIdentity(r, ip)
	if v.domain == "" {
		return nil, time.Time{}, true
	}
	return c.helos.getUntil(heloKey{ip, v.domain})
}

// heloCheck evaluates the HELO identity of a message with a sender. Its
// result depends on the client address and the HELO name alone, so it is
// kept for a few minutes under that pair: every message of an SMTP session
// (and of its reconnections) costs one evaluation. A per-connection value
// would not do: Postfix's smtpd keeps its policy connection across SMTP
// sessions, and one session's messages may reach us on other connections
// of the same smtpd (SMTPD_POLICY_README, "Protocol description"). An
// evaluation our resolver could not finish only marks the HELO identity
// unchecked: MAIL FROM still decides. Like mailFromCheck's, only a
// complete evaluation is kept.
func (c *Checker) heloCheck(ctx context.Context, r *policy.Request, ip netip.Addr, now time.Time) *evaluation {
	v := heloIdentity(r, ip)
	v.now = now
	if v.domain == "" {
		return nil
	}
	k := heloKey{ip, v.domain}
	if e, ok := c.helos.get(k); ok {
		return e
	}
	e, dns := c.check(ctx, v, ip, false)
	if e.err != nil {
		return nil
	}
	if e.result != policy.SPFTempError && ctx.Err() == nil && dns.complete() {
		e.vars = e.vars.owned()
		c.helos.put(heloKey{ip, strings.Clone(k.helo)}, e)
	}
	return e
}

// mailFromCheck evaluates the MAIL FROM identity, or reuses the verdict
// of a recent message from the same client, HELO name and sender domain
// (senderKey): a busy sender's every message would otherwise cost the
// same lookups and the same evaluation. Only a complete evaluation is
// kept: never a temperror, nor one with a lookup that failed or ran out
// of time (memoResolver.complete), nor one whose deadline passed.
func (c *Checker) mailFromCheck(ctx context.Context, v vars, ip netip.Addr) *evaluation {
	if vd, _, ok := c.cachedVerdict(ip, v); ok {
		return c.reuse(ctx, vd, v, ip)
	}
	e, dns := c.check(ctx, v, ip, true)
	if e.err != nil || e.result == policy.SPFTempError || ctx.Err() != nil || !dns.complete() {
		return e
	}
	k := senderKey{ip: ip, helo: strings.Clone(v.helo), domain: strings.Clone(v.domain)}
	if dns.usesSender() {
		k.sender = strings.Clone(v.sender)
	}
	vd := verdict{e.result, e.vouches, nil}
	if e.result == policy.SPFFail {
		// Only a fail's explanation is expanded again (reuse), from the
		// answers the evaluation read; other verdicts keep none of them.
		// A sender whose records are huge is evaluated again instead.
		if dns.size() > maxKeptAnswers {
			return e
		}
		vd.dns = dns
	}
	c.senders.put(k, vd)
	return e
}

// maxKeptAnswers bounds the DNS answers a cached fail keeps, in bytes: a
// sender's records may be 64 KiB a TXT answer over TCP, and the cache
// holds cacheMax verdicts.
const maxKeptAnswers = 16 << 10

// cachedVerdict is a recent MAIL FROM verdict for v's client, HELO name
// and sender domain, or for its sender when the record named it.
func (c *Checker) cachedVerdict(ip netip.Addr, v vars) (verdict, time.Time, bool) {
	k := senderKey{ip: ip, helo: v.helo, domain: v.domain}
	if vd, exp, ok := c.senders.getUntil(k); ok {
		return vd, exp, true
	}
	k.sender = v.sender
	return c.senders.getUntil(k)
}

// reuse is an earlier message's verdict with this message's values. A
// fail's explanation is expanded again from the answers the evaluation
// read (RFC 7208 §6.2): its text may name this sender (%{s}, %{l}) and
// the time (%{t}), and needs no lookup the first one did not make.
func (c *Checker) reuse(ctx context.Context, vd verdict, v vars, ip netip.Addr) *evaluation {
	e := &evaluation{vars: v, result: vd.result, vouches: vd.vouches}
	e.vars.result = string(vd.result)
	if vd.result == policy.SPFFail {
		e.vars.exp = c.explain(ctx, vd.dns, envFor(v, ip, c.receiver))
	}
	return e
}

// check evaluates one identity. The record syntax check (strict.go) runs
// on every record the evaluation fetched before its verdict is trusted.
// A fail is explained by the domain's exp= when it has one. probe asks,
// for a pass, whether the policy passes everyone (passesAnyone); the
// probe shares the evaluation's memo of DNS answers and its deadline,
// which check returns with the evaluation.
func (c *Checker) check(ctx context.Context, v vars, ip netip.Addr, probe bool) (*evaluation, *memoResolver) {
	dns := newMemo(c.resolver)
	result, err := gospf.None, error(nil)
	start := time.Now()
	if v.domain != "" {
		result, err = gospf.CheckHostWithSender(net.IP(ip.AsSlice()), v.helo, v.sender,
			gospf.WithContext(ctx), gospf.WithResolver(dns))
	}
	if bad := c.badRecord(dns); bad != nil && result != gospf.None {
		result, err = gospf.PermError, bad
	}
	e := &evaluation{vars: v, result: Result(result)}
	switch ours := dns.failure(); {
	// A lookup our resolver did not answer leaves no SPF result, whatever
	// the library made of it: a temperror, or a ptr mechanism that failed
	// to match and let the record end in -all (RFC 7208 §5.5 makes a DNS
	// error there a non-match). A pass stands, and a permerror is the
	// record's own.
	case ours != nil && result != gospf.Pass && result != gospf.PermError:
		e.err = policy.Temporary(fmt.Errorf("%w: checking %s: %w", ErrResolver, v.domain, ours))
	case result == gospf.Pass && probe:
		e.vouches = !c.passesAnyone(ctx, dns, v, ip)
	case result == gospf.Fail:
		e.vars.exp = c.explain(ctx, dns, envFor(v, ip, c.receiver))
	}
	e.vars.result = string(e.result)
	c.log.Debug("spf evaluated", slog.String("result", e.vars.result), slog.String("identity", v.identity),
		slog.String("domain", v.domain), slog.String("ip", v.ip), slog.Any("detail", err),
		slog.Any("error", e.err), slog.Duration("dur", time.Since(start)))
	return e, dns
}

// badRecord returns the first syntax error among the records dns fetched.
func (c *Checker) badRecord(dns *memoResolver) error {
	for _, rec := range dns.records() {
		if err := checkRecord(rec); err != nil {
			return err
		}
	}
	return nil
}

// identity picks what is checked and fills the template variables.
func identity(r *policy.Request, ip netip.Addr) vars {
	if d := r.SenderDomain(); d != "" {
		v := vars{ip: ip.String(), helo: r.HeloName, identity: "mailfrom", sender: r.Sender, domain: d}
		if strings.HasPrefix(r.Sender, "@") {
			v.sender = "postmaster" + r.Sender // RFC 7208 §4.3: no local-part
		}
		return v
	}
	return heloIdentity(r, ip)
}

// heloIdentity is the HELO identity (RFC 7208 §2.3): "postmaster@" the
// HELO name; no domain, so none, when the name is not a domain.
func heloIdentity(r *policy.Request, ip netip.Addr) vars {
	v := vars{ip: ip.String(), helo: r.HeloName, identity: "helo"}
	helo := strings.ToLower(strings.TrimSuffix(r.HeloName, "."))
	if isDomain(helo) {
		v.sender, v.domain = "postmaster@"+helo, helo
	}
	return v
}

// isDomain rejects HELO names SPF cannot evaluate: empty, address
// literals, single labels.
func isDomain(s string) bool {
	if s == "" || !strings.Contains(s, ".") || strings.HasPrefix(s, "[") {
		return false
	}
	_, err := netip.ParseAddr(s)
	return err != nil
}

// Probe addresses no real SPF policy lists: 240.0.0.0/4 is reserved
// (RFC 1112 section 4) and 100::/64 is discard-only (RFC 6666). A policy
// that passes them passes every address.
var (
	probe4 = net.ParseIP("240.0.0.1")
	probe6 = net.ParseIP("100::1")
)

// passesAnyone re-evaluates a passing policy for a probe address of the
// client's family, and for the client's mirror, within what is left of
// the evaluation's deadline. Its DNS answers are the ones just fetched
// (dns is the evaluation's memo), so only names that depend on the
// address (an exists: or ptr with %{i}) are asked again; a failure
// counts as "not anyone".
//
// The reserved probe alone is easy to step around: "ip4:0.0.0.0/1
// ip4:128.0.0.0/2 ip4:192.0.0.0/3" passes every unicast IPv4 address
// but 240.0.0.1. The mirror is the client's address with a high bit
// flipped, in another half (IPv4) or another eighth of the global unicast
// space (IPv6): a real pool's policy names its own networks, never one
// that far from them, while a policy that spans the address space passes
// it too.
func (c *Checker) passesAnyone(ctx context.Context, dns gospf.DNSResolver, v vars, ip netip.Addr) bool {
	probe := probe4
	if ip.Is6() {
		probe = probe6
	}
	for _, p := range []net.IP{probe, mirror(ip)} {
		res, _ := gospf.CheckHostWithSender(p, v.helo, v.sender,
			gospf.WithContext(ctx), gospf.WithResolver(dns))
		if res == gospf.Pass {
			return true
		}
	}
	return false
}

// mirror is ip with the top bit of its first octet flipped (IPv4), or
// the bit of its first octet that keeps a 2000::/3 address in 2000::/3
// (IPv6).
func mirror(ip netip.Addr) net.IP {
	b := ip.AsSlice()
	if ip.Is4() {
		b[0] ^= 0x80
	} else {
		b[0] ^= 0x10
	}
	return net.IP(b)
}

// fixAction keeps key's action parsed when its template fills in nothing.
func (c *Checker) fixAction(key string) {
	if tmpl := c.cfg.actionFor(key); !strings.Contains(tmpl, "{") {
		if a, err := render(tmpl, "", vars{}); err == nil {
			c.fixed[key] = a
		}
	}
}

// action renders the configured reply for key (a result, or helo_fail);
// a template that cannot render with this message's values (odd
// characters in the sender) falls back to the default for the result,
// then to DUNNO.
func (c *Checker) action(v vars, key string) policy.Action {
	if a, ok := c.fixed[key]; ok {
		return a
	}
	a, err := render(c.cfg.actionFor(key), c.cfg.Explanation, v)
	if err == nil {
		return a
	}
	c.log.Warn("spf: action does not render", slog.String("result", v.result), slog.Any("error", err))
	tmpl := c.cfg.actionFor(key)
	if a, err = render(defaultActions()[v.result], c.cfg.Explanation, vars{result: v.result,
		identity: v.identity, ip: v.ip, domain: "the sender domain"}); err == nil {
		if sample, err := render(tmpl, c.cfg.Explanation, sampleVars); err == nil && sample.Class() == a.Class() {
			return a
		}
	}
	// The default refuses otherwise than the admin's reply ("450 {helo}"
	// with no HELO name): keep the admin's verb or code.
	if a, ok := policy.Fallback(tmpl, "SPF result: "+v.result); ok {
		return a
	}
	return policy.DunnoAction
}
