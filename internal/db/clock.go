package db

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// The database server's clock.
//
// Every time a store keeps (a triplet's first_seen, a rate-limit window's
// start, a reply pair's last_seen) comes from the deciding daemon's clock
// (greylist.Store), so that tests can inject one. When several MX hosts
// share one PostgreSQL, their clocks must then agree: a triplet first seen
// by a host whose clock runs ten minutes fast is an "early retry" on a
// correct host for ten minutes longer than greylist.delay, and the other
// way round a retry passes before the delay. SQLgrey sidesteps this by
// reading the database's time before each decision (sqlgrey's
// smtpd_access_policy: SELECT now()), a round trip per decision.
//
// The daemon measures instead how far the server's clock is from its own
// on the connector's probe, which already runs every liveEvery, and the
// engine shifts the time the checks see by it (policy.Options.ClockOffset):
// every host then writes the server's time, to within a few milliseconds,
// at no cost per decision.

// ClockWarnOffset is the offset above which the daemon warns that this
// host's clock is off: greylisting is corrected for it, but log lines and
// decision-log rows carry this host's time. A second is the resolution
// of every time the stores keep.
const ClockWarnOffset = time.Second

// probeSQL reads the server's clock as the statement runs (now() would
// be the transaction's start: PostgreSQL documentation 9.9.5, "Current
// Date/Time") and whether the session may write: transaction_read_only is
// on in a hot standby, and where default_transaction_read_only is on
// (PostgreSQL documentation 20.11.1, "Statement Behavior").
const probeSQL = "SELECT clock_timestamp(), current_setting('transaction_read_only') = 'on'"

// ClockOffset is how far the database server's clock is ahead of this
// host's (negative: behind), as the daemon's connector last measured it
// (Start). It is 0 on SQLite, whose clock is this host's, on a DB from
// Open, and before the first probe.
func (d *DB) ClockOffset() time.Duration {
	if d.clock == nil {
		return 0
	}
	return time.Duration(d.clock.offset.Load())
}

// clockSample is one probe's estimate: the server's time minus this host's
// at the midpoint of the round trip, and the round trip. The server read
// its clock somewhere within the round trip, so the estimate is off by at
// most half of it.
type clockSample struct{ offset, rtt time.Duration }

// serverClock keeps the offset the probe measures. Only the probe's
// goroutine calls add; anyone may read offset.
type serverClock struct {
	offset  atomic.Int64 // time.Duration
	samples [8]clockSample
	n, next int
	warned  bool
	log     *slog.Logger
}

// add takes a sample and publishes the offset of the recent sample with
// the shortest round trip, the least uncertain: NTP's clock filter makes
// the same choice among its last eight samples (RFC 5905, section 10), so
// a single slow probe (a busy server) moves nothing.
//
// A clock that is stepped (either one) must show at once, not when the
// older samples have aged out: a sample whose interval of possible
// offsets (its offset, give or take half its round trip) does not meet
// the best one's proves the offset has changed since, and the samples
// before it are dropped.
func (c *serverClock) add(s clockSample) {
	if c.n > 0 {
		if best := c.best(); (s.offset - best.offset).Abs() > (s.rtt+best.rtt)/2+stepSlack {
			c.n, c.next = 0, 0
		}
	}
	c.samples[c.next] = s
	c.next = (c.next + 1) % len(c.samples)
	c.n = min(c.n+1, len(c.samples))
	best := c.best()
	c.offset.Store(int64(best.offset))
	c.report(best)
}

// stepSlack absorbs the server's microsecond timestamps and the drift of
// two clocks between probes, so that a steady offset is never taken for a
// step.
const stepSlack = time.Millisecond

func (c *serverClock) best() clockSample {
	best := c.samples[0]
	for _, x := range c.samples[1:c.n] {
		if x.rtt < best.rtt {
			best = x
		}
	}
	return best
}

// report logs when the offset goes past ClockWarnOffset and when it is
// back within it, once each way.
func (c *serverClock) report(s clockSample) {
	off := s.offset.Round(time.Millisecond)
	switch skewed := s.offset.Abs() > ClockWarnOffset; {
	case skewed && !c.warned:
		c.log.Warn("database clock: this host's clock differs from the database server's; greylisting, rate limits and replies store the server's time, but log lines and decision-log rows carry this host's: check NTP on both",
			"server_ahead_by", off.String(), "uncertainty", (s.rtt / 2).Round(time.Millisecond).String())
	case !skewed && c.warned:
		c.log.Info("database clock: this host's clock agrees with the database server's again",
			"server_ahead_by", off.String())
	}
	c.warned = s.offset.Abs() > ClockWarnOffset
}

// measureClock reads the server's clock on conn, timing the round trip on
// now (this host's clock; a seam for tests), and whether the session is
// read-only (probeSQL). The simple protocol makes it one round trip,
// never a Parse and Describe first.
func measureClock(ctx context.Context, conn *pgx.Conn, now func() time.Time) (s clockSample, readOnly bool, err error) {
	var server time.Time
	t0 := now()
	err = conn.QueryRow(ctx, probeSQL, pgx.QueryExecModeSimpleProtocol).Scan(&server, &readOnly)
	t1 := now()
	if err != nil {
		return clockSample{}, false, err
	}
	rtt := t1.Sub(t0)
	return clockSample{offset: server.Sub(t0.Add(rtt / 2)), rtt: rtt}, readOnly, nil
}

// MeasureClockOffset is ClockOffset for any DB: the connector's latest
// measurement for the daemon's (Start), 0 on SQLite, and for a command's
// PostgreSQL (Open), which has no connector, the best of three reads of
// the server's clock. Code that computes times to compare with stored
// ones (gc's cutoffs, check's decision) shifts its clock by it, as the
// daemon's engine does.
func MeasureClockOffset(ctx context.Context, d *DB) (time.Duration, error) {
	if d.clock != nil || !d.IsPostgres() {
		return d.ClockOffset(), nil
	}
	conn, err := d.PG.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	c := serverClock{log: d.log}
	for range 3 {
		s, _, err := measureClock(ctx, conn.Conn(), time.Now)
		if err != nil {
			return 0, err
		}
		c.add(s)
	}
	return time.Duration(c.offset.Load()), nil
}
