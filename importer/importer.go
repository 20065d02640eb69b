// Package importer reads the state of the greylisters mxpolicyd replaces,
// postgrey (its BerkeleyDB files, through db_dump) and SQLgrey (its
// tables), and turns it into a greylist.ImportSet keyed the way mxpolicyd
// keys requests. Reading validates everything; the caller writes the set
// with greylist.Admin.Import in one transaction, so a bad input writes
// nothing.
package importer

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mxpolicyd/mxpolicyd/greylist"
)

// Options are what every import needs to know about the target.
type Options struct {
	// Config is the daemon's greylist section: its network sizes key the
	// clients, its retry window and max age decide what is already expired.
	Config greylist.Config
	Now    time.Time
}

// Report says what was read: rows for the set, and rows skipped by reason.
type Report struct {
	Passed, Pending int // triplets
	Clients, Pairs  int // auto-whitelist rows
	Merged          int // rows that fell onto a key already read (hosts of one network, senders that normalize alike)
	Skipped         map[string]int
}

// Reasons for skipping a row.
const (
	SkipHashed       = "hashed key (postgrey --privacy)"
	SkipExpired      = "expired (pending past greylist.retry_window, or unseen for greylist.max_age)"
	SkipWide         = "network wider than greylist.ipv4_prefix/ipv6_prefix"
	SkipNullSender   = "null sender in an auto-whitelist (mxpolicyd has no pair for it)"
	SkipUnknownSrc   = "client that is not an address or network (SQLgrey greymethod with a name)"
	SkipNotDelivered = "auto-whitelisted client with no pass counted"
	SkipBadText      = "sender or recipient with a control character or bytes that are not UTF-8"
)

func (r *Report) skip(reason string) {
	if r.Skipped == nil {
		r.Skipped = map[string]int{}
	}
	r.Skipped[reason]++
}

type tripletKey struct {
	net               netip.Prefix
	sender, recipient string
}

type pairKey struct {
	net    netip.Prefix
	domain string
}

// collector gathers rows, merging those that map onto one key.
type collector struct {
	opt      Options
	rep      Report
	triplets map[tripletKey]*greylist.ImportTriplet
	clients  map[netip.Prefix]*greylist.ImportClient
	pairs    map[pairKey]*greylist.ImportPair
}

func newCollector(opt Options) *collector {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	opt.Now = opt.Now.Truncate(time.Second)
	return &collector{opt: opt, triplets: map[tripletKey]*greylist.ImportTriplet{},
		clients: map[netip.Prefix]*greylist.ImportClient{}, pairs: map[pairKey]*greylist.ImportPair{}}
}

// network maps a client network of theirBits to the network mxpolicyd
// keys it by: the same or a wider one. A network wider than ours cannot
// be narrowed to one of ours, so it is skipped.
func (c *collector) network(addr netip.Addr, theirBits int) (netip.Prefix, bool) {
	addr = addr.Unmap()
	bits := c.opt.Config.IPv6Prefix
	if addr.Is4() {
		bits = c.opt.Config.IPv4Prefix
	}
	if theirBits < bits {
		c.rep.skip(SkipWide)
		return netip.Prefix{}, false
	}
	p, err := addr.Prefix(bits)
	return p, err == nil
}

// plain reports whether every value is UTF-8 without control characters,
// and counts the row skipped if not. Another greylister's store may hold
// any bytes a spam engine sent; such a row would be one that no
// "greylist list --sender" could select (it refuses control characters)
// and that PostgreSQL's text refuses outright (a NUL, bytes not UTF-8).
func (c *collector) plain(values ...string) bool {
	for _, v := range values {
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			c.rep.skip(SkipBadText)
			return false
		}
	}
	return true
}

// clamp keeps a time from another clock out of the future, as postgrey
// corrects a first-seen in the future.
func (c *collector) clamp(t time.Time) time.Time {
	if t.After(c.opt.Now) {
		return c.opt.Now
	}
	return t.Truncate(time.Second)
}

func (c *collector) expired(pending bool, first, last time.Time) bool {
	cfg := c.opt.Config
	if pending && first.Before(c.opt.Now.Add(-cfg.RetryWindow)) || last.Before(c.opt.Now.Add(-cfg.MaxAge)) {
		c.rep.skip(SkipExpired)
		return true
	}
	return false
}

// triplet adds t, merging with a triplet of the same key: a pass wins,
// then the earlier first attempt; the last sighting is the latest.
func (c *collector) triplet(t greylist.ImportTriplet) {
	if !c.plain(t.Sender, t.Recipient) {
		return
	}
	// Normalize's lowercasing made a byte that is not UTF-8 U+FFFD in the
	// sender; the raw sender, stored beside it, gets the same, or
	// PostgreSQL would refuse it and the whole import with it.
	t.RawSender = strings.ToValidUTF8(t.RawSender, "\uFFFD")
	t.FirstSeen, t.LastSeen = c.clamp(t.FirstSeen), c.clamp(t.LastSeen)
	if !t.PassedAt.IsZero() {
		t.PassedAt = minTime(c.clamp(t.PassedAt), t.LastSeen)
	}
	if t.LastSeen.Before(t.FirstSeen) {
		t.LastSeen = t.FirstSeen
	}
	if c.expired(t.PassedAt.IsZero(), t.FirstSeen, t.LastSeen) {
		return
	}
	k := tripletKey{t.Net, t.Sender, t.Recipient}
	old, ok := c.triplets[k]
	if !ok {
		c.triplets[k] = &t
		return
	}
	c.rep.Merged++
	last := maxTime(old.LastSeen, t.LastSeen)
	if old.PassedAt.IsZero() && !t.PassedAt.IsZero() ||
		old.PassedAt.IsZero() == t.PassedAt.IsZero() && t.FirstSeen.Before(old.FirstSeen) {
		*old = t
	}
	old.LastSeen = last
}

func (c *collector) client(x greylist.ImportClient) {
	x.LastSeen = c.clamp(x.LastSeen)
	x.FirstSeen = minTime(c.clamp(x.FirstSeen), x.LastSeen)
	if x.Passes < 1 {
		c.rep.skip(SkipNotDelivered)
		return
	}
	if c.expired(false, x.FirstSeen, x.LastSeen) {
		return
	}
	old, ok := c.clients[x.Net]
	if !ok {
		c.clients[x.Net] = &x
		return
	}
	// Hosts of one network: mxpolicyd counts passes per network, at most
	// once per awl_count_interval, so the busiest host's count is the
	// network's (a sum would count one hour's passes several times).
	c.rep.Merged++
	old.Passes = max(old.Passes, x.Passes)
	old.FirstSeen, old.LastSeen = minTime(old.FirstSeen, x.FirstSeen), maxTime(old.LastSeen, x.LastSeen)
}

func (c *collector) pair(x greylist.ImportPair) {
	if !c.plain(x.SenderDomain) {
		return
	}
	x.LastSeen = c.clamp(x.LastSeen)
	x.FirstSeen = minTime(c.clamp(x.FirstSeen), x.LastSeen)
	if c.expired(false, x.FirstSeen, x.LastSeen) {
		return
	}
	k := pairKey{x.Net, x.SenderDomain}
	old, ok := c.pairs[k]
	if !ok {
		c.pairs[k] = &x
		return
	}
	c.rep.Merged++
	old.FirstSeen, old.LastSeen = minTime(old.FirstSeen, x.FirstSeen), maxTime(old.LastSeen, x.LastSeen)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// result returns the set in a stable order, and the report.
func (c *collector) result() (greylist.ImportSet, Report) {
	var set greylist.ImportSet
	for _, t := range c.triplets {
		set.Triplets = append(set.Triplets, *t)
		if t.PassedAt.IsZero() {
			c.rep.Pending++
		} else {
			c.rep.Passed++
		}
	}
	for _, x := range c.clients {
		set.Clients = append(set.Clients, *x)
	}
	for _, x := range c.pairs {
		set.Pairs = append(set.Pairs, *x)
	}
	c.rep.Clients, c.rep.Pairs = len(set.Clients), len(set.Pairs)
	slices.SortFunc(set.Triplets, func(a, b greylist.ImportTriplet) int {
		return cmp.Or(a.Net.Addr().Compare(b.Net.Addr()), cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.Recipient, b.Recipient))
	})
	slices.SortFunc(set.Clients, func(a, b greylist.ImportClient) int { return a.Net.Addr().Compare(b.Net.Addr()) })
	slices.SortFunc(set.Pairs, func(a, b greylist.ImportPair) int {
		return cmp.Or(a.Net.Addr().Compare(b.Net.Addr()), cmp.Compare(a.SenderDomain, b.SenderDomain))
	})
	return set, c.rep
}

// lineError names where a bad input is.
func lineError(name string, line int, format string, args ...any) error {
	return fmt.Errorf("importer: %s:%d: %s", name, line, fmt.Sprintf(format, args...))
}
