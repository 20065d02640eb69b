package dnsbl

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// plans keeps the plan (subjects and queries) of recent requests: a
// busy client sends message after message with the same address, HELO
// name and sender domain, and its plan, a few strings per list, is the
// same each time. A plan is kept with the self-check state of the zones
// it was made under and made again when that changed. Bounded like the
// answer cache: when full, it starts over. Safe for concurrent use.
type plans struct {
	mu sync.Mutex
	m  map[planKey]*planned
}

// planKey is what subjects reads of a request.
type planKey struct {
	ip                 netip.Addr
	sender, helo, name string // name: the client name, when verified
}

type planned struct {
	pairs []pair
	qs    []query
	sick  uint64 // sickMask when made

	// passed is the plan's last passing score (Quick): valid until the
	// first of the cached answers it was made from expires, since until
	// then the same answers give the same score.
	passed atomic.Pointer[passing]
}

// passing is a passing score, as Quick hands it to the request.
type passing struct {
	res    policy.Result
	total  float64
	listed []string // clipped: a reader appending to it copies
	allow  bool
	until  time.Time
}

// apply records the score in st's facts, as Check does, and returns the
// result.
func (ps *passing) apply(st *policy.State) policy.Result {
	st.Facts.DNSScore, st.Facts.DNSListed, st.Facts.DNSAllow = ps.total, ps.listed, ps.allow
	return ps.res
}

// plansMax bounds the plans kept.
const plansMax = 4096

// planFor is plan(subjects(r)), from c.plans when the request's subjects
// and the zones' self-check state are those of a kept plan. The plan
// returned is shared: callers only read its slices.
func (c *Checker) planFor(r *policy.Request) *planned {
	sick, ok := c.sickMask()
	if !ok {
		p := &planned{}
		p.pairs, p.qs = c.plan(subjects(r))
		return p
	}
	k := planKey{ip: r.ClientAddress.Unmap(), sender: r.SenderDomain(), helo: r.HeloName}
	if r.ClientVerified() {
		k.name = r.ClientName
	}
	c.plans.mu.Lock()
	p := c.plans.m[k]
	c.plans.mu.Unlock()
	if p != nil && p.sick == sick {
		return p
	}
	p = &planned{sick: sick}
	p.pairs, p.qs = c.plan(subjects(r))
	// Copies: the request's strings are substrings of the whole request
	// (policy.ReadRequest), which a kept key would keep alive.
	k.sender, k.helo, k.name = strings.Clone(k.sender), strings.Clone(k.helo), strings.Clone(k.name)
	c.plans.mu.Lock()
	if c.plans.m == nil || len(c.plans.m) >= plansMax {
		c.plans.m = make(map[planKey]*planned)
	}
	c.plans.m[k] = p
	c.plans.mu.Unlock()
	return p
}

// sickMask is one bit per zone failing its self-check, in configuration
// order; false when there are too many zones for the bits.
func (c *Checker) sickMask() (uint64, bool) {
	if len(c.order) > 64 {
		return 0, false
	}
	var m uint64
	for i, z := range c.order {
		if !z.usable() {
			m |= 1 << i
		}
	}
	return m, true
}
