// Package replies lets replies to the local users' mail skip greylisting.
// When a SASL-authenticated user sends to an outside address, the check
// records the pair (that address, the user's envelope sender); mail from
// that address (replies.match: domain, from its domain) to that user then
// skips greylisting, as iRedAPD does (plugins/whitelist_outbound_recipient.py)
// and rspamd's replies module does by Message-ID (src/plugins/lua/replies.lua).
// postgrey and SQLgrey see only inbound mail and cannot.
//
// It runs after the whitelist and before greylisting, and for
// authenticated clients too (cmd/mxpolicyd/checks.go): seeing the
// submitted mail is how it learns. Checker is the policy.Check; a Store
// (PostgreSQL or the embedded SQLite file) keeps the pairs.
package replies

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Name is the check's name in the config, the logs and the metrics.
const Name = "replies"

// Reason is the check's reason for a reply, in the decision log.
const Reason = "reply to a local user's mail"

// Observer counts pairs recorded and replies matched, and times the store
// calls; *metrics.Metrics implements it. Calls happen on the request path
// and must not block.
type Observer interface {
	ReplyRecorded()
	ReplyMatched()
	StoreOp(op string, dur time.Duration, err error)
}

// The store operations a Check makes, as Observer.StoreOp names them.
const (
	OpRecord = "replies_record"
	OpMatch  = "replies_match"
)

// Options are a Checker's collaborators and the life of a pair.
type Options struct {
	// MaxAge is how long a pair lasts after it was last seen: the
	// daemon passes greylist.max_age (Config says why).
	MaxAge   time.Duration
	Logger   *slog.Logger
	Observer Observer // nil: not observed
	// ReadOnly records nothing, for "mxpolicyd check" (explain, write
	// nothing); matching still reads the store.
	ReadOnly bool
}

// Checker is the "replies" policy check.
type Checker struct {
	cfg   Config
	local map[string]bool // cfg.LocalDomains
	store Store
	opt   Options
	miss  missCache
}

// New returns the check; cfg must be valid and opt.MaxAge positive.
func New(cfg Config, store Store, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.MaxAge <= 0 {
		return nil, fmt.Errorf("replies: max age must be positive, got %s", opt.MaxAge)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &Checker{cfg: cfg, local: cfg.localSet(), store: store, opt: opt}, nil
}

// Name implements policy.Check.
func (c *Checker) Name() string { return Name }

// Check implements policy.Check. An authenticated request records its
// pair and passes; any other request that is a reply adds greylist to
// Facts.Skip, as a whitelist entry does, and passes with Reason. It
// never decides: Postfix's later restrictions and the other checks still
// apply. Store errors are returned, so the step's on_error applies
// (default DUNNO: the pair is not recorded, or the reply is greylisted).
func (c *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	if st.Req.SASLUsername != "" {
		return c.record(ctx, st)
	}
	return c.match(ctx, st)
}

func (c *Checker) record(ctx context.Context, st *policy.State) (policy.Result, error) {
	p, ok := c.pair(st.Req.Sender, st.Req.Recipient)
	if !ok || c.opt.ReadOnly {
		return policy.Pass(""), nil
	}
	start := time.Now()
	err := c.store.Record(ctx, st.Now, p)
	c.observe(OpRecord, start, err)
	if err != nil {
		return policy.Result{}, db.Classify(err)
	}
	c.miss.forget(c.cacheKey(p))
	if c.opt.Observer != nil {
		c.opt.Observer.ReplyRecorded()
	}
	c.opt.Logger.Debug("replies: pair recorded", "local", p.Local, "outside", p.Outside)
	return policy.Pass(""), nil
}

// Quick implements policy.QuickCheck: a request with nothing to look up
// (exempt already, no pair, or a pair the miss cache knows) or nothing to
// record (no pair: mail to the user's own domain, a bounce; or a read-only
// check) passes without the store, and so never counts for the step's
// pause as the store answering; recording a pair always goes to the store.
func (c *Checker) Quick(st *policy.State) (policy.Result, bool) {
	if st.Req.SASLUsername != "" {
		if _, ok := c.pair(st.Req.Sender, st.Req.Recipient); ok && !c.opt.ReadOnly {
			return policy.Result{}, false
		}
		return policy.Pass(""), true
	}
	if _, _, lookup := c.lookup(st); lookup {
		return policy.Result{}, false
	}
	return policy.Pass(""), true
}

// lookup is the pair a request must be looked up under, and its cache
// key; false when the request passes without a lookup.
func (c *Checker) lookup(st *policy.State) (Pair, string, bool) {
	if st.Facts.Skip.Has(greylist.Name) {
		return Pair{}, "", false // exempt already: spare the lookup
	}
	p, ok := c.pair(st.Req.Recipient, st.Req.Sender)
	if !ok {
		return Pair{}, "", false
	}
	key := c.cacheKey(p)
	return p, key, !c.miss.fresh(key, st.Now)
}

func (c *Checker) match(ctx context.Context, st *policy.State) (policy.Result, error) {
	p, key, lookup := c.lookup(st)
	if !lookup {
		return policy.Pass(""), nil
	}
	start := time.Now()
	hit, err := c.store.Match(ctx, st.Now.Add(-c.opt.MaxAge), p, c.cfg.Match == MatchDomain)
	c.observe(OpMatch, start, err)
	if err != nil {
		return policy.Result{}, db.Classify(err)
	}
	if !hit {
		c.miss.miss(key, st.Now)
		return policy.Pass(""), nil
	}
	st.Facts.Skip = st.Facts.Skip.With(greylist.Name)
	if c.opt.Observer != nil {
		c.opt.Observer.ReplyMatched()
	}
	return policy.Pass(Reason), nil
}

// pair is the pair of a local address and an outside one, the same keys
// whichever way the mail goes, and whether it may be recorded or
// matched. Never: the null sender (a bounce is no correspondent, and
// "<>" must never match one), an address without a domain, and an
// outside address in the local one's domain or in replies.local_domains,
// which is local mail, not a reply from outside.
func (c *Checker) pair(local, outside string) (Pair, bool) {
	p := Pair{Local: strings.ToLower(strings.TrimSpace(local)), Outside: greylist.NormalizeMailbox(outside)}
	p.OutsideDomain = policy.Domain(p.Outside)
	localDomain := policy.Domain(p.Local)
	switch {
	case p.Outside == greylist.NullSender, p.OutsideDomain == "", localDomain == "",
		p.OutsideDomain == strings.TrimSuffix(localDomain, "."), c.local[p.OutsideDomain]:
		return Pair{}, false
	}
	return p, true
}

// cacheKey is what a lookup of p matches on: the local address and the
// outside address, or its domain with replies.match: domain.
func (c *Checker) cacheKey(p Pair) string {
	if c.cfg.Match == MatchDomain {
		return p.Local + "\x00" + p.OutsideDomain
	}
	return p.Local + "\x00" + p.Outside
}

// GC deletes the pairs unseen for max age at now, batch rows per
// statement; with dryRun it only counts them.
func (c *Checker) GC(ctx context.Context, now time.Time, batch int, dryRun bool) (int64, error) {
	return c.store.GC(ctx, now.Add(-c.opt.MaxAge), batch, dryRun)
}

func (c *Checker) observe(op string, start time.Time, err error) {
	if c.opt.Observer != nil {
		c.opt.Observer.StoreOp(op, time.Since(start), err)
	}
}

var _ policy.QuickCheck = (*Checker)(nil)
