package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
)

// Admin reads and changes greylisting state for the administrative
// commands (`mxpolicyd greylist list|release|forget`, `mxpolicyd import`),
// which postgrey never had. A change that can take a pass away bumps
// greylist_version in its own transaction; every daemon polls it and
// clears its pass cache (Changes, cache.go).
type Admin struct {
	cfg Config
	d   adminDialect
}

// adminDialect is one store kind's access for Admin, picked once with
// db.Dialect. Every value is a bind parameter; the SQL text is constant.
type adminDialect interface {
	list(ctx context.Context, s selection, f Filter, limit int) ([]Row, error)
	release(ctx context.Context, s selection, now time.Time) (int64, error)
	forget(ctx context.Context, s selection) (ForgetResult, error)
	version(ctx context.Context) (int64, error)
	load(ctx context.Context, set ImportSet) (ImportResult, error)
}

// NewAdmin returns the administration of d's greylisting tables. cfg
// says how client addresses map to client keys (greylist.ipv4_prefix,
// ipv6_prefix), as in the daemon.
func NewAdmin(d *db.DB, cfg Config) *Admin {
	return &Admin{cfg: cfg, d: db.Dialect[adminDialect](d.Kind(), pgAdmin{d.PG}, liteAdmin{d.SQL})}
}

// ErrNoSelector refuses a change that would select every triplet without
// Selector.All.
var ErrNoSelector = errors.New("greylist: no --client, --sender or --recipient given; --all selects every triplet")

// ErrBadSelector matches every error about a Selector (ErrNoSelector
// included): nothing was read or changed.
var ErrBadSelector = errors.New("greylist: bad selector")

type selectorError struct{ error }

func (e selectorError) Is(target error) bool { return target == ErrBadSelector }
func (e selectorError) Unwrap() error        { return e.error }

// Selector names triplets. Empty fields match anything; all empty needs All.
type Selector struct {
	// Client is an address (keyed by its network, as requests are), a
	// network of greylist.ipv4_prefix/ipv6_prefix bits, or a client key
	// as list prints it ("net:192.0.2.0/24", "spf:example.com").
	Client    string
	Sender    string // an envelope sender, normalized as requests are; "<>" the null sender
	Recipient string
	All       bool // select everything: refused together with a field
}

// State is where a triplet is in greylisting.
type State string

// States; StateAny selects both.
const (
	StateAny     State = ""
	StatePending State = "pending"
	StatePassed  State = "passed"
)

// ParseState reads a --state value ("all" is StateAny).
func ParseState(s string) (State, error) {
	switch s {
	case "", "all":
		return StateAny, nil
	case "pending", "passed":
		return State(s), nil
	}
	return "", fmt.Errorf("greylist: unknown state %s (want pending, passed or all)", quote.Short(s))
}

// Filter selects triplets for List.
type Filter struct {
	Selector
	State     State
	OlderThan time.Time // first seen before this; zero: any
	NewerThan time.Time // first seen at or after this; zero: any
	Limit     int       // at most this many, newest first; 0: all
}

// Row is one triplet as stored.
type Row struct {
	ClientKey  string     `json:"client_key"`
	Sender     string     `json:"sender"`
	Recipient  string     `json:"recipient"`
	RawSender  string     `json:"raw_sender"`
	ClientAddr string     `json:"client_addr"`
	State      State      `json:"state"`
	FirstSeen  time.Time  `json:"first_seen"`
	LastSeen   time.Time  `json:"last_seen"`
	PassedAt   *time.Time `json:"passed_at"`
	Attempts   int        `json:"attempts"`
	Passes     int        `json:"passes"`
}

// ForgetResult counts what Forget deleted.
type ForgetResult struct {
	Triplets   int64
	Pairs      int64 // (client, sender domain) auto-whitelist rows
	AWLClients int64 // client auto-whitelist rows
}

// selection is a Selector checked and turned into stored keys; "" matches
// anything.
type selection struct {
	clientKey    string
	net          netip.Prefix // set when the client is a network: its client AWL row
	sender       string
	senderDomain string
	recipient    string
	all          bool
}

// List returns the triplets f selects, newest first, and whether more
// than f.Limit matched.
func (a *Admin) List(ctx context.Context, f Filter) ([]Row, bool, error) {
	s, err := a.resolve(f.Selector, true)
	if err != nil {
		return nil, false, err
	}
	if f.Limit < 0 {
		return nil, false, fmt.Errorf("greylist: limit must not be negative, got %d", f.Limit)
	}
	limit := -1
	if f.Limit > 0 {
		limit = f.Limit + 1
	}
	rows, err := a.d.list(ctx, s, f, limit)
	if err != nil {
		return nil, false, fmt.Errorf("greylist: list: %w", err)
	}
	if f.Limit > 0 && len(rows) > f.Limit {
		return rows[:f.Limit], true, nil
	}
	return rows, false, nil
}

// Release lets the selected pending triplets pass from now on: their next
// attempt passes as if it came after the delay. It returns how many it
// released.
func (a *Admin) Release(ctx context.Context, sel Selector, now time.Time) (int64, error) {
	s, err := a.resolve(sel, false)
	if err != nil {
		return 0, err
	}
	n, err := a.d.release(ctx, s, now.Truncate(time.Second))
	if err != nil {
		return 0, fmt.Errorf("greylist: release: %w", err)
	}
	return n, nil
}

// Forget deletes what lets the selected mail pass without a new round of
// greylisting: the matching triplets, the (client, sender domain) pairs of
// a named client or sender, and a named client network's auto-whitelist
// row. With All it deletes every triplet and auto-whitelist row.
func (a *Admin) Forget(ctx context.Context, sel Selector) (ForgetResult, error) {
	s, err := a.resolve(sel, false)
	if err != nil {
		return ForgetResult{}, err
	}
	r, err := a.d.forget(ctx, s)
	if err != nil {
		return ForgetResult{}, fmt.Errorf("greylist: forget: %w", err)
	}
	return r, nil
}

// Version returns the change counter release and forget bump.
func (a *Admin) Version(ctx context.Context) (int64, error) {
	v, err := a.d.version(ctx)
	if err != nil {
		return 0, fmt.Errorf("greylist: read version: %w", err)
	}
	return v, nil
}

// resolve checks a selector; list may select everything without All.
func (a *Admin) resolve(sel Selector, list bool) (selection, error) {
	s, err := a.check(sel, list)
	if err != nil {
		return s, selectorError{err}
	}
	return s, nil
}

func (a *Admin) check(sel Selector, list bool) (selection, error) {
	s := selection{all: sel.All}
	named := sel.Client != "" || sel.Sender != "" || sel.Recipient != ""
	switch {
	case sel.All && named:
		return s, errors.New("greylist: --all selects every triplet; give it alone, without --client, --sender or --recipient")
	case !sel.All && !named && !list:
		return s, ErrNoSelector
	}
	var err error
	if sel.Client != "" {
		if s.clientKey, s.net, err = a.clientKey(sel.Client); err != nil {
			return s, err
		}
	}
	if sel.Sender != "" {
		if err := plainText("sender", sel.Sender); err != nil {
			return s, err
		}
		s.sender = Normalize(sel.Sender)
		if s.sender != NullSender {
			s.senderDomain = senderDomain(s.sender)
		}
	}
	if sel.Recipient != "" {
		if err := plainText("recipient", sel.Recipient); err != nil {
			return s, err
		}
		s.recipient = strings.ToLower(strings.TrimSpace(sel.Recipient))
	}
	return s, nil
}

func senderDomain(normalized string) string {
	if i := strings.LastIndexByte(normalized, '@'); i >= 0 {
		return normalized[i+1:]
	}
	return ""
}

func plainText(what, v string) error {
	if len(v) > 1000 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("greylist: bad %s %s (%d bytes): over 1000 bytes or has control characters", what, quote.Short(v), len(v))
	}
	return nil
}

// clientKey maps a --client value to the key requests from it get
// (Config.KeyFor), and its network when it has one.
func (a *Admin) clientKey(v string) (string, netip.Prefix, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if d, ok := strings.CutPrefix(v, KindSPF+":"); ok {
		if d == "" || strings.ContainsAny(d, " \t/@") {
			return "", netip.Prefix{}, fmt.Errorf("greylist: bad client key %s", quote.Short(v))
		}
		return v, netip.Prefix{}, nil
	}
	v = strings.TrimPrefix(v, KindNet+":")
	if addr, err := netip.ParseAddr(v); err == nil {
		k := a.cfg.KeyFor(addr, "", "", "")
		return k.ClientKey, k.Net, nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("greylist: client %s is not an address, a network or a client key (net:..., spf:...)", quote.Short(v))
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		// An IPv4 network in IPv4-mapped form, as whitelist entries and
		// allowed_clients take it: ::ffff:192.0.2.0/120 is 192.0.2.0/24.
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if bits := a.NetBits(p.Addr()); p.Bits() != bits || p.Masked() != p {
		return "", netip.Prefix{}, fmt.Errorf("greylist: client %s: clients are keyed by /%d networks (greylist.ipv%d_prefix); give an address or its /%d",
			v, bits, ipVersion(p.Addr()), bits)
	}
	return KindNet + ":" + p.String(), p, nil
}

// NetBits is the network size clients of addr's family are keyed by.
func (a *Admin) NetBits(addr netip.Addr) int {
	if addr.Unmap().Is4() {
		return a.cfg.IPv4Prefix
	}
	return a.cfg.IPv6Prefix
}

func ipVersion(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// rowState names a row's state from its passed_at.
func rowState(passed *time.Time) State {
	if passed == nil {
		return StatePending
	}
	return StatePassed
}

// optTime is nil for the zero time, so "$n IS NULL" means "no bound".
func optTime(t time.Time, conv func(time.Time) any) any {
	if t.IsZero() {
		return nil
	}
	return conv(t)
}
