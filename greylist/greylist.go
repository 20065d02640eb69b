// Package greylist defers mail from unknown (client, sender, recipient)
// triplets until the client proves it is a real MTA by retrying, and never
// delays a proven sender twice. Checker is the policy.Check; a
// Store (PostgreSQL or the embedded SQLite file) keeps the state.
//
// Greylisting reads the SPF and DNS list results (policy.Facts: the SPF
// domain keys pool-aware triplets, the DNS score and SPF result decide
// only_suspicious), so it runs after those checks (cmd/mxpolicyd/checks.go).
package greylist

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Name is the check's name in the config, the logs and the metrics.
const Name = "greylist"

// headerSent marks a message whose X-Greylist header is queued: its text
// differs per recipient (delay, date), so Message's own de-duplication of
// identical headers is not enough.
var headerSent = policy.NewMessageKey[bool]("greylist.header")

// Observer is told how long each store operation took and whether it
// failed; *metrics.Metrics implements it. Calls happen on the request
// path and must not block.
type Observer interface {
	StoreOp(op string, dur time.Duration, err error)
}

// OpDecide is the store operation a Check makes, as Observer.StoreOp names it.
const OpDecide = "greylist_decide"

// Options are the collaborators of a Checker; zero values are usable.
type Options struct {
	Logger   *slog.Logger
	Observer Observer // nil: not observed
}

// Checker is the "greylist" policy check.
type Checker struct {
	cfg      Config
	store    Store
	cache    *passCache
	host     string
	log      *slog.Logger
	obs      Observer
	readOnly Peeker       // set: evaluate with Peek, write nothing
	dataSeen atomic.Int64 // Unix nanoseconds of the last DATA request (waitForData)
}

// NewStore returns the Store for an open, migrated database.
func NewStore(d *db.DB) Store {
	if d.IsPostgres() {
		return NewPGStore(d.PG)
	}
	return NewSQLiteStore(d)
}

// New returns the check. cfg must be valid (Config.Validate).
func New(cfg Config, store Store, opt Options) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opt.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "localhost"
	}
	return &Checker{cfg: cfg, store: store, cache: newPassCache(cfg.CacheSize), host: host, log: logger,
		obs: opt.Observer}, nil
}

// NewReadOnly returns a check that evaluates decisions without recording
// them, for "mxpolicyd check": the answer is what the next real request
// would get.
func NewReadOnly(cfg Config, store Store, opt Options) (*Checker, error) {
	p, ok := store.(Peeker)
	if !ok {
		return nil, fmt.Errorf("greylist: store %T cannot evaluate read-only", store)
	}
	g, err := New(cfg, store, opt)
	if err != nil {
		return nil, err
	}
	g.readOnly, g.cache = p, nil
	return g, nil
}

// Name implements policy.Check.
func (g *Checker) Name() string { return Name }

// Config returns the configuration the check runs with.
func (g *Checker) Config() Config { return g.cfg }

// GC runs garbage collection with the check's configuration.
func (g *Checker) GC(ctx context.Context, now time.Time, dryRun bool) (GCStats, error) {
	return g.store.GC(ctx, now, &g.cfg, dryRun)
}

// Check decides one recipient: it records the triplet, then answers as
// the message's verdict says (answer). Store errors are returned, so
// the engine applies the step's on_error action (default DUNNO: fail
// open), unless the message is already deferred.
func (g *Checker) Check(ctx context.Context, st *policy.State) (policy.Result, error) {
	res, k, ok := g.fromMemory(st)
	if ok {
		return res, nil
	}
	k, o, err := g.record(ctx, st, k)
	if err != nil {
		return g.failed(st, err)
	}
	// The engine logs the decision; this adds the key it was made on.
	g.log.Debug("greylist key", "client_key", k.ClientKey, "sender_key", k.Sender,
		"rcpt_key", k.Recipient, "verdict", o.Verdict.String())
	return g.answer(st, k, o, ""), nil
}

// record asks the store to decide the attempt of triplet k and caches a
// pass; for a request SPF could not check it also decides the pool's
// other key (unverified), and answers by it when that one passes. It
// returns the key it answers by.
func (g *Checker) record(ctx context.Context, st *policy.State, k Key) (Key, Outcome, error) {
	gen := g.cache.generation()
	o, err := g.decide(ctx, st.Now, k)
	if err != nil {
		return k, o, err
	}
	g.remember(k, o, st.Now, gen)
	if alt, ok := g.unverified(st, k); ok && !o.Verdict.Passes() {
		if ao, err := g.decide(ctx, st.Now, alt); err == nil {
			g.remember(alt, ao, st.Now, gen)
			if ao.Verdict.Passes() {
				return alt, ao, nil
			}
		}
	}
	return k, o, nil
}

// RecordAttempt implements policy.AttemptRecorder: an attempt an earlier
// check deferred with DEFER_IF_PERMIT (SPF's temperror, a DNS list's
// deferral) still starts its triplet's round, as it does for a
// greylisting policy service after that check in Postfix's restrictions,
// which go on after a defer_if_permit (access(5)). The retry that the
// earlier check lets through is then not greylisted as a new triplet. It
// answers nothing, and leaves the message's verdict alone.
func (g *Checker) RecordAttempt(ctx context.Context, st *policy.State) error {
	if _, skip := g.exempt(st); skip {
		return nil
	}
	k := g.Key(st)
	if _, ok := g.cached(k, st.Now); ok {
		return nil
	}
	_, _, err := g.record(ctx, st, k)
	return err
}

var _ policy.AttemptRecorder = (*Checker)(nil)

// Quick implements policy.QuickCheck: an exempt request, and a pass the
// cache remembers, are answered without the store.
func (g *Checker) Quick(st *policy.State) (policy.Result, bool) {
	res, _, ok := g.fromMemory(st)
	return res, ok
}

// fromMemory answers an exempt request or a cached pass; otherwise it
// returns the triplet the store must decide.
func (g *Checker) fromMemory(st *policy.State) (policy.Result, Key, bool) {
	if reason, skip := g.exempt(st); skip {
		return policy.Pass(reason), Key{}, true
	}
	k := g.Key(st)
	if v, ok := g.cached(k, st.Now); ok {
		return g.answer(st, k, Outcome{Verdict: v}, cachedNote), k, true
	}
	return policy.Result{}, k, false
}

// decide asks the store, timed for the observer. A store error is marked
// temporary when it may go away by itself (db.IsTemporary), for the
// engine's error kind.
func (g *Checker) decide(ctx context.Context, now time.Time, k Key) (Outcome, error) {
	if g.readOnly != nil {
		o, err := g.readOnly.Peek(ctx, now, &g.cfg, k)
		return o, db.Classify(err)
	}
	start := time.Now()
	o, err := g.store.Decide(ctx, now, &g.cfg, k)
	if g.obs != nil {
		g.obs.StoreOp(OpDecide, time.Since(start), err)
	}
	return o, db.Classify(err)
}

// exempt says why a request is not greylisted at all.
func (g *Checker) exempt(st *policy.State) (string, bool) {
	switch {
	case !st.Req.ClientAddress.IsValid():
		return "no client address", true
	case st.Facts.DNSAllow:
		return "DNS allowlisted", true
	case g.cfg.OnlySuspicious && !suspicious(st):
		return "not suspicious", true
	}
	return "", false
}

// suspicious is the only_suspicious test: a DNS list scored the client,
// SPF did not vouch for it, or it has no forward-confirmed host name
// (Fastmail's published rule: greylist only hosts without valid reverse
// DNS or on dial-up ranges).
func suspicious(st *policy.State) bool {
	if st.Facts.DNSScore > 0 {
		return true
	}
	switch st.Facts.SPF {
	case policy.SPFNone, policy.SPFNeutral, policy.SPFSoftFail, policy.SPFFail, policy.SPFPermError:
		return true
	}
	return !st.Req.ClientVerified()
}

// unverified is the pool's key of a request SPF could not check: its
// result was temperror, a transient (generally DNS) error (RFC 7208
// §2.6.6), which is also what spf.Checker's Failed notes when the check
// gave no result at all. Such a request keys by network (Key), and
// a pool's key depends on a lookup that failed: a sender whose first
// attempt met a failing resolver would key by network, its retry, checked,
// by its domain, and be greylisted a second time; and the other way round.
// record decides the attempt under the domain's key too, as the one SPF
// names for MAIL FROM (§2.4), and answers from it when it passes. Its
// rows are only ever consulted for a sender that SPF failed to check or
// that SPF authorized. Bounces key by network whatever SPF says (the HELO
// identity names one host: spf.Checker apply).
func (g *Checker) unverified(st *policy.State, k Key) (Key, bool) {
	if !g.cfg.PoolAware || k.Kind != KindNet || st.Facts.SPF != policy.SPFTempError || st.Req.SenderDomain() == "" {
		return Key{}, false
	}
	return g.cfg.KeyFor(st.Req.ClientAddress, st.Req.Sender, st.Req.Recipient, st.Req.SenderDomain()), true
}

// Key computes the triplet of a request.
func (g *Checker) Key(st *policy.State) Key {
	spf := ""
	if st.Facts.SPF == policy.SPFPass {
		spf = st.Facts.SPFDomain
	}
	return g.cfg.KeyFor(st.Req.ClientAddress, st.Req.Sender, st.Req.Recipient, spf)
}

// KeyFor computes a triplet: the client part is the client's network, or
// with pool_aware the domain whose SPF policy authorized the client
// (spfPass: "" when SPF did not pass).
func (c Config) KeyFor(client netip.Addr, sender, rcpt, spfPass string) Key {
	addr := client.Unmap().WithZone("")
	bits := c.IPv4Prefix
	if addr.Is6() {
		bits = c.IPv6Prefix
	}
	nw, _ := addr.Prefix(bits)
	k := Key{
		Kind: KindNet, Net: nw, Addr: addr,
		RawSender: sender, Sender: Normalize(sender), Recipient: strings.ToLower(rcpt),
	}
	k.SenderDomain = policy.Domain(k.Sender)
	if d := strings.ToLower(strings.TrimSuffix(spfPass, ".")); c.PoolAware && d != "" {
		k.ClientKey, k.Kind = KindSPF+":"+d, KindSPF
	} else {
		var b [64]byte // "net:" and the longest IPv6 prefix fit: one allocation, not two
		k.ClientKey = string(appendNetKey(b[:0], nw))
	}
	return k
}

// appendNetKey appends the client key of network nw to b: KindNet, ":"
// and the network.
func appendNetKey(b []byte, nw netip.Prefix) []byte { return nw.AppendTo(append(b, KindNet+":"...)) }

// Cache keys, one namespace per kind of pass, appended to b: a lookup
// builds its key in a buffer on the stack and costs no allocation
// (passCache.passes), only a stored key becomes a string.
func clientCacheKey(b []byte, k Key) []byte { return k.Net.AppendTo(append(b, "c\x00"...)) }
func pairCacheKey(b []byte, k Key) []byte {
	return join(append(b, "p\x00"...), k.ClientKey, k.SenderDomain)
}
func tripletCacheKey(b []byte, k Key) []byte {
	return join(append(b, "t\x00"...), k.ClientKey, k.Sender, k.Recipient)
}

// join appends parts to b, NUL between them.
func join(b []byte, parts ...string) []byte {
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// cached is the verdict of a pass the cache remembers.
func (g *Checker) cached(k Key, now time.Time) (Verdict, bool) {
	var buf [256]byte
	switch {
	case g.cfg.AWLClientPasses > 0 && g.cache.passes(clientCacheKey(buf[:0], k), now):
		return VerdictAWLClient, true
	case g.cfg.AWLPair && k.SenderDomain != "" && g.cache.passes(pairCacheKey(buf[:0], k), now):
		return VerdictAWLPair, true
	case g.cache.passes(tripletCacheKey(buf[:0], k), now):
		return VerdictKnown, true
	}
	return 0, false
}

// remember caches a pass. The database row was just seen at now, so it
// is valid until now + max age, beyond the cache's CacheRefresh. gen is
// the cache's generation from before the store was asked (passCache.put).
func (g *Checker) remember(k Key, o Outcome, now time.Time, gen int64) {
	if !o.Verdict.Passes() || g.cfg.CacheRefresh <= 0 {
		return
	}
	until := now.Add(g.cfg.CacheRefresh)
	switch o.Verdict {
	case VerdictAWLClient:
		g.cache.put(clientCacheKey(nil, k), until, gen)
	case VerdictAWLPair:
		g.cache.put(pairCacheKey(nil, k), until, gen)
	default:
		g.cache.put(tripletCacheKey(nil, k), until, gen)
		if g.cfg.AWLPair && k.SenderDomain != "" {
			g.cache.put(pairCacheKey(nil, k), until, gen) // the store recorded the pair with this pass
		}
	}
}

func (v Verdict) reason() string { return reasons[v] }

var reasons = [...]string{"new triplet", "early retry", "passed after delay", "passed before",
	"client auto-whitelisted", "sender domain auto-whitelisted for client"}

// cachedNote marks a verdict answered from the pass cache.
const cachedNote = " (cached)"

// cachedReasons are the reasons with cachedNote, made once rather than
// per cached decision.
var cachedReasons = func() (r [len(reasons)]string) {
	for i, s := range reasons {
		r[i] = s + cachedNote
	}
	return r
}()

// why is v's reason with note (answer's: "" or cachedNote).
func (v Verdict) why(note string) string {
	switch note {
	case "":
		return v.reason()
	case cachedNote:
		return cachedReasons[v]
	}
	return v.reason() + note
}

// pass is the result of a recipient whose triplet passes and whose
// message is not deferred: the delay it waited, and the header it earns.
func (g *Checker) pass(st *policy.State, o Outcome, note string) policy.Result {
	r := policy.Pass(o.Verdict.why(note))
	if o.Verdict == VerdictPassed {
		r.Delay = o.Delay
		g.addHeader(st, o.Delay)
	}
	return r
}

// One verdict per message. Postfix's "instance" attribute ties the
// requests of one message on one connection (SMTPD_POLICY_README,
// "Protocol description"), and policy.Message keeps state per instance.
// Deciding each recipient alone splits a message whose recipients mix a
// known triplet and a new one (the null sender and awl_pair: false make
// that common): one part is delivered now, the other after a retry, and
// a sender that never retries loses it. So greylisting keeps a verdict per
// message, over its greylisted recipients only (a whitelisted or role
// recipient, or an exempt client, never touches it), and every triplet is
// recorded as it comes, so the retry passes for all of them:
//
//   - Once one recipient is deferred, every later one is deferred too,
//     even a known one. Its triplet is still recorded (a new one starts
//     its delay now), so the retry passes whole.
//   - A pass never carries a new triplet through: a spammer who puts a
//     known recipient first still waits for every new one. That is the
//     abuse case of letting the first recipient decide for the message.
//   - A new triplet after a recipient already accepted (250 at RCPT)
//     cannot be deferred at RCPT without splitting the message. With
//     greylist.stage: data the recipient is answered DUNNO and the
//     deferral waits for DATA, where Postfix asks again when
//     check_policy_service is also in smtpd_data_restrictions, and where
//     DEFER_IF_PERMIT defers the whole message (CheckMessage). With
//     stage: rcpt it is deferred at RCPT: a split, but never a pass.
//
// The cost: a known recipient may wait one delay with a new one, for that
// message only. In the DATA case the message's exempt recipients wait
// with it too; deferring at RCPT whenever nothing was accepted yet keeps
// that to messages whose first greylisted recipient was known.
type msgVerdict struct {
	accepted bool      // a greylisted recipient was answered with a pass (or failed open)
	deferred bool      // a greylisted recipient must wait, so the message waits
	atData   bool      // the deferral waits for DATA: a pass was already given at RCPT
	until    time.Time // when every deferred triplet of the message can pass
	rcpt     string    // the first deferred recipient, for %r at DATA
}

// messageVerdict is the verdict so far of the message a request belongs to.
var messageVerdict = policy.NewMessageKey[msgVerdict]("greylist.verdict")

// dataTrust is how long a DATA request proves that Postfix asks at DATA.
// greylist.stage: data holds a deferral for DATA only while that is
// proven, so a Postfix without the smtpd_data_restrictions hook (or one
// whose hook was removed) gets RCPT-time answers, which may split a
// message but never let a new triplet pass.
const dataTrust = time.Hour

// waitForData reports whether a deferral may wait for DATA. A DATA
// request seen more than clockSlack after now means the clock has
// stepped back since (an NTP step, a resumed VM): it proves nothing about
// the hour before now, where trusting it would stretch the trust by the
// step.
func (g *Checker) waitForData(now time.Time) bool {
	seen := g.dataSeen.Load()
	if g.cfg.Stage != StageData || seen == 0 {
		return false
	}
	age := now.Sub(time.Unix(0, seen))
	return age >= -clockSlack && age <= dataTrust
}

// clockSlack is how far the time the checks see may run backwards
// without counting as a step of the clock: on PostgreSQL it follows the
// server's clock, whose measured offset moves by milliseconds from one
// probe to the next (internal/db/clock.go), and daemons on several hosts
// measure it each on their own. The stores' statements spell it as one
// minute too (liteExpired, pgExpired, pgSetExpired).
const clockSlack = time.Minute

// answer applies the message's verdict to a recipient whose triplet got
// o; note marks a verdict from the cache.
func (g *Checker) answer(st *policy.State, k Key, o Outcome, note string) policy.Result {
	m, _ := messageVerdict.Get(st.Msg)
	reason := o.Verdict.why(note)
	if !o.Verdict.Passes() {
		if !m.deferred {
			m.deferred, m.rcpt = true, k.Recipient
			m.atData = m.accepted && g.waitForData(st.Now)
		}
		m.until = later(m.until, o.FirstSeen.Add(g.cfg.Delay))
		messageVerdict.Set(st.Msg, m)
	}
	switch {
	case m.atData:
		// Accept at RCPT, defer the whole message at DATA. The checks
		// after this one have nothing to decide for the recipient, and
		// must not count it (a rate limit): this attempt is refused.
		st.Facts.Skip = st.Facts.Skip.With(policy.AllChecks)
		return policy.Pass(reason + "; message deferred at DATA")
	case m.deferred && o.Verdict.Passes():
		return g.deferral(st, m, k.Recipient, reason+"; deferred with its message")
	case m.deferred:
		return g.deferral(st, m, k.Recipient, reason)
	}
	m.accepted = true
	messageVerdict.Set(st.Msg, m)
	return g.pass(st, o, note)
}

// failed answers a recipient whose triplet could not be recorded: with the
// message when it is already deferred at RCPT (its retry will record the
// triplet), else by the engine's on_error, counted as an acceptance since
// on_error is DUNNO by default.
func (g *Checker) failed(st *policy.State, err error) (policy.Result, error) {
	if res, ok := g.Failed(st); ok {
		return res, nil
	}
	return policy.Result{}, err
}

// Failed implements policy.FailureCheck, for a recipient greylisting did
// not answer at all (its store timed out, or the step is paused): as
// failed, so the message keeps one verdict whether the store failed
// inside Check or Check never answered.
func (g *Checker) Failed(st *policy.State) (policy.Result, bool) {
	m, _ := messageVerdict.Get(st.Msg)
	if m.deferred && !m.atData {
		return g.deferral(st, m, st.Req.Recipient, "store failed; deferred with its message"), true
	}
	if !m.accepted {
		m.accepted = true
		messageVerdict.Set(st.Msg, m)
	}
	return policy.Result{}, false
}

// CheckMessage implements policy.MessageCheck: at DATA it defers the
// message whose deferral waited for it, and notes that Postfix asks at
// DATA (waitForData).
func (g *Checker) CheckMessage(_ context.Context, st *policy.State) (policy.Result, error) {
	g.dataSeen.Store(st.Now.UnixNano())
	m, _ := messageVerdict.Get(st.Msg)
	if !m.atData {
		return policy.Pass(""), nil
	}
	return g.deferral(st, m, m.rcpt, "greylisted recipient in message"), nil
}

// deferral is the DEFER_IF_PERMIT of a message whose triplets can all pass
// at m.until; %r names rcpt's domain.
func (g *Checker) deferral(st *policy.State, m msgVerdict, rcpt, reason string) policy.Result {
	left := m.until.Sub(st.Now.Truncate(time.Second))
	return policy.Result{
		Action: policy.Action{Verb: policy.DeferIfPermit, Text: g.text(left, rcpt)},
		Reason: reason,
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// addHeader queues X-Greylist once per message, in postgrey's form but
// never naming a recipient (SQLgrey's X-Greylist names one; see its
// sqlgrey script).
func (g *Checker) addHeader(st *policy.State, delay time.Duration) {
	if !g.cfg.Header || st.Msg == nil {
		return
	}
	if _, done := headerSent.Get(st.Msg); done {
		return
	}
	headerSent.Set(st.Msg, true)
	st.Msg.AddHeader(fmt.Sprintf("X-Greylist: delayed %d seconds by mxpolicyd at %s; %s",
		int64(delay/time.Second), g.host, st.Now.Format(time.RFC1123Z)))
}

// text renders the deferral template: %s seconds left (at least 1), %d the
// delay, %r the recipient domain, %% a percent sign.
func (g *Checker) text(left time.Duration, rcpt string) string {
	secs := int64((left + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	var b strings.Builder
	t := g.cfg.Text
	for i := 0; i < len(t); i++ {
		if t[i] != '%' || i+1 >= len(t) {
			b.WriteByte(t[i])
			continue
		}
		i++
		switch t[i] {
		case 's':
			b.WriteString(strconv.FormatInt(secs, 10))
		case 'd':
			b.WriteString(strconv.FormatInt(int64(g.cfg.Delay/time.Second), 10))
		case 'r':
			b.WriteString(sanitize(policy.Domain(rcpt)))
		default:
			b.WriteByte(t[i])
		}
	}
	return b.String()
}

// sanitize keeps client-supplied text from breaking the one-line reply.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

var (
	_ policy.MessageCheck = (*Checker)(nil)
	_ policy.FailureCheck = (*Checker)(nil)
	_ policy.QuickCheck   = (*Checker)(nil)
)
