package policy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// A check whose timeouts can only be our own (its store: Step.OwnTimeouts)
// is paused when they come in a row: a table locked by a migration or by
// an administrator's open transaction holds every statement on it, and
// the readiness probe, which touches no table, does not notice. Without a
// pause every request would wait out the check's whole share (greylist's
// 1.5 s) before failing open; Postfix's smtpd processes, each held that
// long per recipient, would run out under load. Paused, the check answers
// its on_error at once, and one request every pauseFor tries it again: the
// first to succeed ends the pause. Checks whose timeouts a sender can
// cause (SPF against a sender's slow DNS) are never paused: a pause would
// let a sender switch them off for everyone.
const (
	pauseAfter = 3           // timeouts in a row that pause a check
	pauseFor   = time.Second // how long, between tries
)

// errPaused is the error of a paused check's step: temporary, so the
// decision line says error_<check>_kind=temporary.
var errPaused = errors.New("paused: its last runs timed out")

// pause is one check's state, kept across reloads (plan.pauses).
type pause struct {
	timeouts atomic.Int32 // in a row
	until    atomic.Int64 // Unix nanoseconds the pause lasts until; 0: not paused
}

// skip reports whether the check must not run now; when a pause has
// run out, exactly one caller gets false (it tries the check) and the
// pause is extended for the others.
func (p *pause) skip(clock func() time.Time) bool {
	u := p.until.Load()
	if u == 0 {
		return false // the clock is read only during a pause
	}
	now := clock()
	// Within the pause. A time before it began means the clock has
	// stepped back (an NTP step, a resumed VM): until holds wall-clock
	// time, so the pause has run out rather than grown by the step.
	if n := now.UnixNano(); n < u && n >= u-int64(pauseFor) {
		return true
	}
	return !p.until.CompareAndSwap(u, now.Add(pauseFor).UnixNano())
}

// done records how a run that was not skipped ended.
func (p *pause) done(name string, err error, now time.Time, log *slog.Logger) {
	if !IsTimeout(err) {
		if p.timeouts.Load() != 0 {
			p.timeouts.Store(0)
		}
		if p.until.Load() != 0 && p.until.Swap(0) != 0 {
			log.Info("check resumed: it answered in time again", "check", name)
		}
		return
	}
	if p.timeouts.Add(1) >= pauseAfter && p.until.CompareAndSwap(0, now.Add(pauseFor).UnixNano()) {
		log.Warn("check paused: its last runs timed out; answering its on_error at once, and trying it again every "+pauseFor.String(),
			"check", name, "timeouts_in_a_row", pauseAfter, "err", err)
	}
}

// pausedError is the step's error while its check is paused.
func pausedError(name string) error {
	return Temporary(fmt.Errorf("policy: check %s %w", name, errPaused))
}
