// Package whitelist exempts requests from some or all checks: static lists
// read from files (postgrey's whitelist_clients and whitelist_recipients
// formats, so a postgrey site can bring its lists) and entries kept in the
// database, managed with `mxpolicyd whitelist`. Matching is done in memory on
// an immutable snapshot; the database is only polled for changes.
//
// Which checks each kind bypasses is fixed here and documented in
// docs/whitelists.md: only what the client cannot forge (its address, its verified
// host name) bypasses everything; envelope addresses, which anyone can write,
// bypass greylisting only, except the role recipients (postmaster@, abuse@),
// which also bypass DNS lists so that a client listed by mistake can say so.
package whitelist

import (
	"fmt"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Kind is what an entry matches.
type Kind string

const (
	// Client matches the client's IP address against an address or prefix.
	// It bypasses every check: a TCP peer address cannot be spoofed.
	Client Kind = "client"
	// ClientName matches the client's verified host name (Postfix's
	// client_name, forward-confirmed reverse DNS), never reverse_client_name,
	// so a PTR record the sender controls cannot pass (SMTPD_POLICY_README,
	// "Protocol description": client_name is "unknown" unless the name
	// resolves back to the address; reverse_client_name is the bare PTR).
	// It bypasses every check, like Client.
	ClientName Kind = "client_name"
	// Sender matches the envelope sender. Senders are trivially forged, so
	// this bypasses greylisting only, never DNSBL or SPF.
	Sender Kind = "sender"
	// Recipient matches the envelope recipient: an opt-out from greylisting.
	Recipient Kind = "recipient"
)

// Kinds lists every kind, in the order Match tries them.
var kinds = []Kind{Client, ClientName, Sender, Recipient}

// ParseKind accepts a kind name as written on the command line. "hostname"
// is accepted for client_name because that is what postgrey calls it. Its
// error matches ErrInvalid.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case Client, ClientName, Sender, Recipient:
		return k, nil
	case "hostname", "client-name":
		return ClientName, nil
	}
	return "", invalidError{fmt.Errorf("whitelist: unknown kind %s (want client, client_name, sender or recipient)", quote.Short(s))}
}

// Bypasses returns the checks an entry of kind k exempts a request from.
func (k Kind) Bypasses() policy.CheckSet {
	switch k {
	case Client, ClientName:
		return policy.CheckSet{policy.AllChecks: true}
	}
	return policy.CheckSet{greylist.Name: true}
}

// roleBypasses is what the role recipients (postmaster@, abuse@) bypass:
// greylisting and DNS lists too, because a client listed by mistake must be
// able to reach postmaster to get the mistake fixed (RFC 5321 section 4.5.1
// requires accepting postmaster; RFC 2142 names abuse@). SPF still applies:
// a forged sender is no more welcome at postmaster@ than anywhere else.
func roleBypasses() policy.CheckSet {
	return policy.CheckSet{greylist.Name: true, dnsbl.Name: true}
}
