// Package spf is the "spf" policy check: it evaluates the sender's SPF
// policy (RFC 7208) with blitiri.com.ar/go/spf once per message, maps the
// result to a reply through a configurable table, records the result for
// greylisting, and queues a Received-SPF header.
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
	log      *slog.Logger
}

// New validates cfg and returns the check. resolver is normally a
// *resolver.Resolver, whose errors go/spf classifies correctly (a timeout
// is TempError); a plain *net.Resolver works too.
func New(cfg Config, resolver gospf.DNSResolver, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, resolver: resolver, receiver: cfg.receiver(), log: opt.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Name is the check's name in configuration and logs.
func (c *Checker) Name() string { return Name }

// outcome is one message's SPF evaluation, reused for every recipient.
type outcome struct {
	result Result
	// vouches: the pass names this client, not everyone. A policy that
	// also passes a probe address (+all, ip4:0.0.0.0/0) authorizes any
	// host, so its domain must not key pool-aware greylisting: every bot
	// sending as that domain would share one key and one retry would pass
	// them all.
	vouches bool
	vars    vars
	header  string
	action  policy.Action
	took    time.Duration
	err     error // wraps ErrResolver: no result, on_error decides
}

// Check evaluates SPF for the message (once; later recipients reuse the
// outcome) and answers the configured action for the result.
func (c *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	o := c.outcome(ctx, st)
	if o == nil {
		return policy.Pass("spf: no client address"), nil
	}
	if o.err != nil {
		return policy.Result{}, o.err
	}
	st.Facts.SPF = o.result
	if o.result == policy.SPFPass && o.vouches {
		st.Facts.SPFDomain = o.vars.domain
	}
	if c.cfg.Header && o.header != "" && st.Msg != nil {
		st.Msg.AddHeader(o.header) // ignored once queued or sent
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
	o := c.evaluate(ctx, st.Req, ip)
	outcomeKey.Set(st.Msg, o)
	return o
}

// evaluate runs the SPF check for the MAIL FROM identity, or for the HELO
// identity when the sender is null (RFC 7208 §2.4: "postmaster@" the HELO
// name). A HELO name that is not a domain gives none (RFC 7208 §2.3).
// The check and its probe share one deadline (the step's, capped by
// spf.timeout) and one memo of DNS answers, so the probe adds no budget
// of its own.
func (c *Checker) evaluate(ctx context.Context, r *policy.Request, ip netip.Addr) *outcome {
	if c.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	v := identity(r, ip)
	dns := newMemo(c.resolver)
	result, err := gospf.None, error(nil)
	start := time.Now()
	if v.domain != "" {
		result, err = gospf.CheckHostWithSender(net.IP(ip.AsSlice()), r.HeloName, v.sender,
			gospf.WithContext(ctx), gospf.WithResolver(dns))
	}
	v.result = string(result)
	o := &outcome{result: Result(result), vars: v}
	if ours := dns.failure(); result == gospf.TempError && ours != nil {
		o.err = policy.Temporary(fmt.Errorf("%w: checking %s: %w", ErrResolver, v.domain, ours))
	} else if result == gospf.Pass {
		o.vouches = !c.passesAnyone(ctx, dns, r, v.sender, ip)
	}
	o.took = time.Since(start)
	if o.err == nil {
		o.action = c.action(v)
		o.header = header(c.receiver, v, r.Sender)
	}
	c.log.Debug("spf evaluated", slog.String("result", v.result), slog.String("identity", v.identity),
		slog.String("domain", v.domain), slog.String("ip", v.ip), slog.Any("detail", err),
		slog.Any("error", o.err), slog.Duration("dur", o.took))
	return o
}

// identity picks what is checked and fills the template variables.
func identity(r *policy.Request, ip netip.Addr) vars {
	v := vars{ip: ip.String(), helo: r.HeloName}
	if d := r.SenderDomain(); d != "" {
		v.identity, v.sender, v.domain = "mailfrom", r.Sender, d
		return v
	}
	v.identity = "helo"
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
// client's family, within what is left of the evaluation's deadline. Its
// DNS answers are the ones just fetched (dns is the evaluation's memo),
// so only names that depend on the address (an exists: or ptr with
// %{i}) are asked again; a failure counts as "not anyone".
func (c *Checker) passesAnyone(ctx context.Context, dns gospf.DNSResolver, r *policy.Request, sender string, ip netip.Addr) bool {
	probe := probe4
	if ip.Is6() {
		probe = probe6
	}
	res, _ := gospf.CheckHostWithSender(probe, r.HeloName, sender,
		gospf.WithContext(ctx), gospf.WithResolver(dns))
	return res == gospf.Pass
}

// action renders the configured reply; a template that cannot render
// with this message's values (odd characters in the sender) falls back
// to the default for the result, then to DUNNO.
func (c *Checker) action(v vars) policy.Action {
	a, err := render(c.cfg.actionFor(v.result), c.cfg.Explanation, v)
	if err == nil {
		return a
	}
	c.log.Warn("spf: action does not render", slog.String("result", v.result), slog.Any("error", err))
	if a, err = render(defaultActions()[v.result], c.cfg.Explanation, vars{result: v.result,
		identity: v.identity, ip: v.ip, domain: "the sender domain"}); err == nil {
		return a
	}
	return policy.DunnoAction
}
