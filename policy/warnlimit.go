package policy

import (
	"sync"
	"time"
)

// warnKind names a warning the server may have to log once per
// connection: enough of those connections would fill the log (one local
// process can open thousands).
type warnKind int

const (
	warnNotAllowed warnKind = iota // refused: client outside allowed_clients
	warnBusy                       // refused: max_connections, all busy
	warnEvicted                    // idle connection closed to admit another
	warnBadRequest                 // closed without reply: malformed request
	warnSilent                     // closed: no request within read_timeout
	warnWrite                      // closed: the reply could not be written
	warnAccept                     // accept failed (out of descriptors, all busy)
	warnEvictedFD                  // idle connection closed for its descriptor
	numWarnKinds
)

// warnInterval is how often each kind of warning may be logged.
const warnInterval = 10 * time.Second

// warnLimiter lets one line of each kind through per interval and counts
// the lines it held back, so the next line can say how many there were.
// The zero value is not usable: use newWarnLimiter.
type warnLimiter struct {
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	kinds [numWarnKinds]struct {
		last       time.Time
		logged     bool
		suppressed int
	}
}

func newWarnLimiter(every time.Duration, now func() time.Time) *warnLimiter {
	return &warnLimiter{every: every, now: now}
}

// allow reports whether a line of kind may be logged now and, if so, how
// many lines of that kind were suppressed since the last one logged.
func (l *warnLimiter) allow(kind warnKind) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := &l.kinds[kind]
	if k.logged && now.Sub(k.last) < l.every {
		k.suppressed++
		return false, 0
	}
	suppressed = k.suppressed
	k.last, k.logged, k.suppressed = now, true, 0
	return true, suppressed
}
