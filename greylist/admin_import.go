package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// ImportSet is greylisting state read from another greylister (package
// importer: postgrey, SQLgrey), already keyed the way this daemon keys
// requests: networks of greylist.ipv4_prefix/ipv6_prefix bits and
// normalized senders.
type ImportSet struct {
	Triplets []ImportTriplet
	Clients  []ImportClient
	Pairs    []ImportPair
}

// ImportTriplet is a pending (PassedAt zero) or passed triplet.
type ImportTriplet struct {
	Net       netip.Prefix
	Addr      netip.Addr // for audit; the network's address when unknown
	Sender    string     // Normalize'd
	RawSender string
	Recipient string // lowercased
	FirstSeen time.Time
	LastSeen  time.Time
	PassedAt  time.Time // zero: pending
}

// ImportClient is an auto-whitelist count of a client network.
type ImportClient struct {
	Net       netip.Prefix
	Addr      netip.Addr
	Passes    int
	FirstSeen time.Time
	LastSeen  time.Time
}

// ImportPair is a (client network, sender domain) auto-whitelist entry.
type ImportPair struct {
	Net          netip.Prefix
	Addr         netip.Addr
	SenderDomain string
	FirstSeen    time.Time
	LastSeen     time.Time
}

// ImportResult counts the rows an Import added or merged into; the others
// were present already and stayed as they were.
type ImportResult struct {
	Triplets, Clients, Pairs int64
}

// Import writes set in one transaction, so a failure writes nothing. It is
// idempotent: a row that exists is left alone unless the import knows more
// (a pending triplet that passed, an earlier first attempt, more client
// passes, a later last sighting), so running it twice changes nothing the
// second time. Every row is checked before anything is written.
func (a *Admin) Import(ctx context.Context, set ImportSet) (ImportResult, error) {
	if err := a.checkImport(set); err != nil {
		return ImportResult{}, err
	}
	r, err := a.d.load(ctx, set)
	if err != nil {
		return ImportResult{}, fmt.Errorf("greylist: import: %w", err)
	}
	return r, nil
}

func (a *Admin) checkImport(set ImportSet) error {
	for _, t := range set.Triplets {
		if err := a.checkNet(t.Net, t.Addr); err != nil {
			return err
		}
		if t.Sender == "" || t.Recipient == "" || t.FirstSeen.IsZero() || t.LastSeen.Before(t.FirstSeen) ||
			!t.PassedAt.IsZero() && t.PassedAt.Before(t.FirstSeen) {
			return fmt.Errorf("greylist: import: bad triplet %s %q %q", t.Net, t.Sender, t.Recipient)
		}
	}
	for _, c := range set.Clients {
		if err := a.checkNet(c.Net, c.Addr); err != nil {
			return err
		}
		if c.Passes < 1 || c.LastSeen.IsZero() {
			return fmt.Errorf("greylist: import: bad auto-whitelisted client %s", c.Net)
		}
	}
	for _, p := range set.Pairs {
		if err := a.checkNet(p.Net, p.Addr); err != nil {
			return err
		}
		if p.SenderDomain == "" || p.FirstSeen.IsZero() || p.LastSeen.Before(p.FirstSeen) {
			return fmt.Errorf("greylist: import: bad auto-whitelisted pair %s %q", p.Net, p.SenderDomain)
		}
	}
	return nil
}

// checkNet insists on the networks requests are keyed by, so an imported
// row can match one.
func (a *Admin) checkNet(p netip.Prefix, addr netip.Addr) error {
	if !p.IsValid() || p.Masked() != p || p.Bits() != a.NetBits(p.Addr()) || !addr.IsValid() || !p.Contains(addr) {
		return fmt.Errorf("greylist: import: network %s (address %s) is not a /%d network containing the address",
			p, addr, a.NetBits(p.Addr()))
	}
	return nil
}

// netKey is the client key of a network.
func netKey(p netip.Prefix) string { return KindNet + ":" + p.String() }

// importPassCounts are the attempts and passes an imported triplet gets:
// a passed one as if it had passed once (its next attempt is "known"), a
// pending one as after its first attempt (its next attempt after the delay
// is "passed").
func importPassCounts(t ImportTriplet) (attempts, passes int) {
	if t.PassedAt.IsZero() {
		return 1, 0
	}
	return 2, 1
}
