package greylist

import (
	"context"
	"net/netip"
	"time"
)

// Store keeps greylisting state. Each Decide is one atomic statement (or,
// on SQLite, one transaction) that records the attempt and returns the
// verdict, so concurrent requests on many hosts never both see "new"
// (pgstore.go: INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING). Times
// come from the caller's clock, never the database's, and are truncated to
// the second. The daemon's clock, on PostgreSQL, is its host's shifted to
// the server's (internal/db/clock.go), so hosts sharing it agree.
type Store interface {
	Decide(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error)
	// GC deletes pending triplets older than the retry window, and passed
	// triplets and auto-whitelist rows unseen for max age, in batches of
	// cfg.GCBatch rows; with dryRun it only counts them.
	GC(ctx context.Context, now time.Time, cfg *Config, dryRun bool) (GCStats, error)
}

// Key is one greylisting triplet and what is recorded about it.
type Key struct {
	ClientKey    string       // "net:192.0.2.0/24" or "spf:example.com"
	Kind         string       // KindNet or KindSPF
	Net          netip.Prefix // the client's network
	Addr         netip.Addr   // the client's address
	Sender       string       // Normalize(RawSender)
	RawSender    string
	Recipient    string // lowercased
	SenderDomain string // of Sender; "" for the null sender: no pair AWL
}

// Key kinds.
const (
	KindNet = "net"
	KindSPF = "spf"
)

// Verdict is what a Decide concluded.
type Verdict int

// Verdicts. New and Early defer; the others pass.
const (
	VerdictNew       Verdict = iota // first attempt, or the first after the entry expired
	VerdictEarly                    // a retry before the delay
	VerdictPassed                   // the first retry after the delay
	VerdictKnown                    // a triplet that passed before
	VerdictAWLClient                // the client network is auto-whitelisted
	VerdictAWLPair                  // the (client, sender domain) pair is auto-whitelisted
)

var verdictNames = [...]string{"new", "early", "passed", "known", "awl-client", "awl-pair"}

func (v Verdict) String() string { return verdictNames[v] }

// Passes reports whether the verdict lets the mail through.
func (v Verdict) Passes() bool { return v >= VerdictPassed }

// Outcome is a verdict with the triplet's times.
type Outcome struct {
	Verdict   Verdict
	FirstSeen time.Time     // triplet verdicts: start of the greylisting round
	Delay     time.Duration // Passed and Known: how long the triplet was delayed
}

// GCStats counts the rows GC removed (or would remove).
type GCStats struct {
	Pending    int64 // pending triplets older than the retry window
	Passed     int64 // passed triplets unseen for max age
	AWLClients int64
	AWLPairs   int64
}

// Total is the number of rows.
func (s GCStats) Total() int64 { return s.Pending + s.Passed + s.AWLClients + s.AWLPairs }

// cutoffs are the instants a decision compares stored times with; the
// stores compute nothing from durations themselves.
type cutoffs struct {
	now, delay, window, maxAge, count time.Time
}

func newCutoffs(now time.Time, cfg *Config) cutoffs {
	now = now.Truncate(time.Second)
	return cutoffs{
		now:    now,
		delay:  now.Add(-cfg.Delay),
		window: now.Add(-cfg.RetryWindow),
		maxAge: now.Add(-cfg.MaxAge),
		count:  now.Add(-cfg.AWLCountInterval),
	}
}

// outcome turns a triplet row's state after the upsert into a verdict:
// attempts 1 means this request created (or restarted) the round; passes
// counts the passing attempts, so 1 is the first pass.
func outcome(firstSeen time.Time, passedAt *time.Time, attempts, passes int) Outcome {
	o := Outcome{FirstSeen: firstSeen}
	switch {
	case passes == 0 && attempts <= 1:
		o.Verdict = VerdictNew
	case passes == 0:
		o.Verdict = VerdictEarly
	case passes == 1:
		o.Verdict = VerdictPassed
	default:
		o.Verdict = VerdictKnown
	}
	if passedAt != nil {
		o.Delay = delay(firstSeen, *passedAt)
	}
	return o
}

// delay is how long a triplet waited from its first attempt to its
// pass. A pass stamped before the first attempt (a release by an admin
// host whose clock is behind, or a clock stepped back since the first
// attempt) waited no time, not a negative one.
func delay(firstSeen, passed time.Time) time.Duration {
	return max(passed.Sub(firstSeen), 0)
}

// Peeker is implemented by stores that can evaluate a decision without
// recording it, for "mxpolicyd check" (explain, write nothing).
type Peeker interface {
	Peek(ctx context.Context, now time.Time, cfg *Config, k Key) (Outcome, error)
}

// peekState is what Peek reads: whether the client or pair is
// auto-whitelisted, and the triplet's row if there is one.
type peekState struct {
	awlClient, awlPair bool
	found              bool
	firstSeen          time.Time
	lastSeen           time.Time
	passedAt           *time.Time
	passes             int // 0 on a passed row: released (greylist release), not yet retried
}

// verdict is what Decide would answer for this state at c.now, without the
// write: the same rules as the upsert, evaluated in Go.
func (p peekState) verdict(c cutoffs) Outcome {
	switch {
	case p.awlClient:
		return Outcome{Verdict: VerdictAWLClient}
	case p.awlPair:
		return Outcome{Verdict: VerdictAWLPair}
	case !p.found,
		p.passedAt == nil && (p.firstSeen.Before(c.window) || p.firstSeen.After(c.now.Add(clockSlack))),
		p.passedAt != nil && p.lastSeen.Before(c.maxAge):
		return Outcome{Verdict: VerdictNew, FirstSeen: c.now}
	case p.passedAt != nil && p.passes == 0:
		return Outcome{Verdict: VerdictPassed, FirstSeen: p.firstSeen, Delay: delay(p.firstSeen, *p.passedAt)}
	case p.passedAt != nil:
		return Outcome{Verdict: VerdictKnown, FirstSeen: p.firstSeen, Delay: delay(p.firstSeen, *p.passedAt)}
	case !p.firstSeen.After(c.delay):
		return Outcome{Verdict: VerdictPassed, FirstSeen: p.firstSeen, Delay: delay(p.firstSeen, c.now)}
	}
	return Outcome{Verdict: VerdictEarly, FirstSeen: p.firstSeen}
}
