// Package ratelimit limits how fast one key (a SASL login, a sender, a
// client network, or a combination) may send, and from how many client
// networks one login may arrive: the two signs of a stolen password, which
// sends thousands of messages an hour from wherever the thief is. It does
// the job of cbpolicyd's Quotas module and postfwd's rate() inside
// mxpolicyd.
//
// Checker is the policy.Check. Rate rules use the generic cell rate
// algorithm (conform, in store.go): one theoretical arrival time per key,
// updated in one atomic statement per decision, so every daemon sharing a
// PostgreSQL database enforces one limit together. A Store keeps the
// counters on PostgreSQL or in the embedded SQLite file.
//
// The check runs for SASL-authenticated clients even under skip_sasl (the
// daemon's check table marks it so), at RCPT for messages, recipients and
// networks, and at END-OF-MESSAGE for bytes, the first stage at which
// Postfix knows the size (SMTPD_POLICY_README, "size").
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Name is the check's name in the config, the logs and the metrics.
const Name = "ratelimit"

// The reasons a rule gives when it decides; the report view reads the
// rule's name back from them (migrations/shared/ratelimit_views.sql), so
// they are fixed suffixes after the name.
const (
	reasonRate     = ": over its limit"
	reasonNetworks = ": too many networks"
)

// Observer is told of every request a rule found over its limit (observe
// rules included) and how long each store operation took;
// *metrics.Metrics implements it. Calls must not block.
type Observer interface {
	// RateLimitRules reports the rules of a check as it is built (New),
	// so that each rule's hit counter exists from the start, at 0.
	RateLimitRules(names []string)
	RateLimitHit(rule string)
	StoreOp(op string, dur time.Duration, err error)
}

// The store operations, as Observer.StoreOp names them.
const (
	OpTake     = "ratelimit_take"
	OpNetworks = "ratelimit_networks"
)

// Options are the collaborators of a Checker; zero values are usable.
type Options struct {
	Logger   *slog.Logger
	Observer Observer // nil: not observed
}

// Checker is the "ratelimit" policy check.
type Checker struct {
	cfg   Config
	store Store
	log   *slog.Logger
	obs   Observer
}

// Per-message memory, so one message is one message: the rules a message
// was counted under, and the network count a distinct_networks rule found
// at the message's first recipient. Maps are replaced, never changed,
// since a staged view shares the message's values (policy.Message).
var (
	countedKey  = policy.NewMessageKey[map[string]bool]("ratelimit.counted")
	networksKey = policy.NewMessageKey[map[string]int]("ratelimit.networks")
)

// New returns the check; cfg must be valid (Config.Validate).
func New(cfg Config, store Store, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opt.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opt.Observer != nil {
		names := make([]string, len(cfg.Rules))
		for i, r := range cfg.Rules {
			names[i] = r.Name
		}
		opt.Observer.RateLimitRules(names)
	}
	return &Checker{cfg: cfg, store: store, log: logger, obs: opt.Observer}, nil
}

// Name implements policy.Check.
func (c *Checker) Name() string { return Name }

// Config returns the configuration the check runs with.
func (c *Checker) Config() Config { return c.cfg }

// over is a rule the request is over the limit of.
type over struct {
	rule   *Rule
	key    string
	reason string
}

// Check counts the request under every rule that applies and answers the
// action of the first one, in the config's order, that it is over. A
// store error is returned, so the engine applies on_error (default DUNNO:
// fail open).
func (c *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	var hits []over
	var cells []Cell
	var cellRules []*Rule
	applied := false
	for i := range c.cfg.Rules {
		r := &c.cfg.Rules[i]
		key, ok := r.match(st.Req)
		if !ok {
			continue
		}
		applied = true
		if r.kind() == KindDistinctNetworks {
			h, err := c.networks(ctx, st, r, key)
			if err != nil {
				return policy.Result{}, err
			}
			hits = append(hits, h...)
			continue
		}
		if cost := r.cost(st, key); cost > 0 {
			cells, cellRules = append(cells, r.cell(key, cost)), append(cellRules, r)
		}
	}
	h, err := c.take(ctx, st, cells, cellRules)
	if err != nil {
		return policy.Result{}, err
	}
	hits = append(hits, h...)
	return c.result(st, hits, applied), nil
}

// take charges the rate cells and marks the messages counted.
func (c *Checker) take(ctx context.Context, st *policy.State, cells []Cell, rules []*Rule) ([]over, error) {
	if len(cells) == 0 {
		return nil, nil
	}
	start := time.Now()
	ok, err := c.store.Take(ctx, st.Now, cells)
	c.observe(OpTake, start, err)
	if err != nil {
		return nil, db.Classify(err)
	}
	var hits []over
	counted, _ := countedKey.Get(st.Msg)
	var next map[string]bool // a copy of counted, made when a rule is added: the message's value is never changed in place
	for i, r := range rules {
		switch {
		case !ok[i]:
			hits = append(hits, over{rule: r, key: cells[i].Key, reason: r.Name + reasonRate})
		case r.count() == CountMessages && !counted[countedName(r, cells[i].Key)]:
			if next == nil {
				next = maps.Clone(counted)
			}
			if next == nil {
				next = map[string]bool{}
			}
			next[countedName(r, cells[i].Key)] = true
		}
	}
	if next != nil {
		countedKey.Set(st.Msg, next)
	}
	return hits, nil
}

// networks records the client's network under a distinct_networks rule,
// once per message, and reports the rule if the key is over its limit.
func (c *Checker) networks(ctx context.Context, st *policy.State, r *Rule, key string) ([]over, error) {
	seen, _ := networksKey.Get(st.Msg)
	n, done := seen[r.Name]
	if !done {
		nw := r.network(st.Req.ClientAddress)
		start := time.Now()
		var err error
		n, err = c.store.SeeNetwork(ctx, st.Now, r.Limit.Per, r.Name, key, nw)
		c.observe(OpNetworks, start, err)
		if err != nil {
			return nil, db.Classify(err)
		}
		next := maps.Clone(seen)
		if next == nil {
			next = map[string]int{}
		}
		next[r.Name] = n
		networksKey.Set(st.Msg, next)
	}
	if int64(n) <= r.Limit.N {
		return nil, nil
	}
	if !done {
		// The compromised-account signal, once per message: an alert keys
		// on this message or on mxpolicyd_ratelimit_hits_total{rule}.
		c.log.Warn("ratelimit: key seen from too many client networks", "rule", r.Name, "key", key,
			"networks", n, "limit", r.Limit.String(), "client", st.Req.ClientAddress.String())
	}
	return []over{{rule: r, key: key, reason: r.Name + reasonNetworks}}, nil
}

// result answers the first rule over its limit that enforces; observe
// rules are logged and counted only.
func (c *Checker) result(st *policy.State, hits []over, applied bool) policy.Result {
	slices.SortStableFunc(hits, func(a, b over) int { return c.index(a.rule) - c.index(b.rule) })
	var observed []string
	for _, h := range hits {
		if c.obs != nil {
			c.obs.RateLimitHit(h.rule.Name)
		}
		c.log.Info("ratelimit: over the limit", "rule", h.rule.Name, "key", h.key,
			"limit", h.rule.Limit.String(), "observe", h.rule.Action.Observe, "instance", st.Req.Instance)
		if !h.rule.Action.Observe {
			a, _ := policy.ParseAction(h.rule.render(h.rule.action(), h.key)) // validated at load
			return policy.Result{Action: a, Reason: h.reason}
		}
		observed = append(observed, h.reason+" (observe)")
	}
	switch {
	case len(observed) > 0:
		return policy.Pass(strings.Join(observed, ", "))
	case applied:
		return policy.Pass("within rate limits")
	}
	return policy.Pass("")
}

func (c *Checker) index(r *Rule) int {
	for i := range c.cfg.Rules {
		if &c.cfg.Rules[i] == r {
			return i
		}
	}
	return len(c.cfg.Rules)
}

func (c *Checker) observe(op string, start time.Time, err error) {
	if c.obs != nil {
		c.obs.StoreOp(op, time.Since(start), err)
	}
}

// match returns the request's key under r, if r applies to the request:
// at its stage, under its conditions, and with every part of its key
// known (a rule keyed by sasl_username passes over unauthenticated
// clients).
func (r *Rule) match(req *policy.Request) (string, bool) {
	if !r.atStage(req.ProtocolState) || !r.When.holds(req) {
		return "", false
	}
	parts := make([]string, len(r.Key))
	for i, p := range r.Key {
		if parts[i] = r.part(p, req); parts[i] == "" {
			return "", false
		}
	}
	return strings.Join(parts, "|"), true
}

// atStage: bytes at END-OF-MESSAGE, where Postfix sends the real size
// (at RCPT, size is only what the client announced in MAIL FROM, if
// anything); everything else at RCPT.
func (r *Rule) atStage(state string) bool {
	if r.kind() == KindRate && r.count() == CountBytes {
		return state == "END-OF-MESSAGE"
	}
	return state == "RCPT"
}

func (w *When) holds(req *policy.Request) bool {
	if w.Authenticated != nil && *w.Authenticated != (req.SASLUsername != "") {
		return false
	}
	if len(w.PolicyContext) > 0 && !slices.Contains(w.PolicyContext, req.PolicyContext) {
		return false
	}
	if len(w.ServerAddress) > 0 && !slices.Contains(w.ServerAddress, Addr{req.ServerAddress.Unmap()}) {
		return false
	}
	return len(w.ServerPort) == 0 || slices.Contains(w.ServerPort, req.ServerPort)
}

// part is one key part's value, lowercased so that case cannot split one
// sender into many keys; "" when the request does not have it. The null
// sender is "<>", so bounces share one key.
func (r *Rule) part(p Part, req *policy.Request) string {
	switch p {
	case PartSASLUsername:
		return strings.ToLower(req.SASLUsername)
	case PartSender:
		if req.Sender == "" {
			return "<>"
		}
		return strings.ToLower(req.Sender)
	case PartSenderDomain:
		if req.Sender == "" {
			return "<>"
		}
		return req.SenderDomain()
	case PartClientAddress:
		if !req.ClientAddress.IsValid() {
			return ""
		}
		return req.ClientAddress.Unmap().WithZone("").String()
	case PartClientNetwork:
		return r.network(req.ClientAddress)
	case PartRecipientDomain:
		return policy.Domain(req.Recipient)
	}
	return ""
}

// network is the client's network under the rule's prefixes, "" if
// Postfix sent no address.
func (r *Rule) network(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	v4, v6 := r.prefixes()
	bits := v4
	if a.Is6() {
		bits = v6
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// cost is what the request costs under a rate rule with key: 1 per
// message (0 for the later recipients of a message already counted under
// that key), 1 per recipient, or the size in bytes.
func (r *Rule) cost(st *policy.State, key string) int64 {
	switch r.count() {
	case CountRecipients:
		return 1
	case CountBytes:
		return max(st.Req.Size, 0)
	}
	if counted, _ := countedKey.Get(st.Msg); counted[countedName(r, key)] {
		return 0
	}
	return 1
}

// countedName is how a message remembers it was counted under rule r
// with key: once per key, so that a rule keyed by recipient_domain counts
// the message once for each domain it goes to, and checks each.
func countedName(r *Rule, key string) string { return r.Name + "\x00" + key }

// String names the rule for messages.
func (r *Rule) String() string { return fmt.Sprintf("%s (%s %s)", r.Name, r.kind(), r.Limit) }

// Quick implements policy.QuickCheck: a request no rule applies to (an
// unauthenticated client under rules keyed by sasl_username, most often)
// passes without the store.
func (c *Checker) Quick(st *policy.State) (policy.Result, bool) {
	for i := range c.cfg.Rules {
		if _, ok := c.cfg.Rules[i].match(st.Req); ok {
			return policy.Result{}, false
		}
	}
	return policy.Pass(""), true
}

var _ policy.QuickCheck = (*Checker)(nil)

// CheckEndOfMessage implements policy.EndOfMessageCheck: the bytes rules,
// which Check leaves alone at RCPT (Rule.atStage).
func (c *Checker) CheckEndOfMessage(ctx context.Context, st *policy.State) (policy.Result, error) {
	return c.Check(ctx, st)
}

var _ policy.EndOfMessageCheck = (*Checker)(nil)
