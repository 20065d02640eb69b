package replies

import (
	"errors"
	"fmt"
	"strings"
)

// Config is the `replies:` section. How long a recorded pair lasts is not
// here: it is greylist.max_age, the life of a passed greylisting triplet,
// so a correspondent stays trusted exactly as long as one who retried
// once (and gc removes both with the same cutoff).
type Config struct {
	// Match is how an inbound sender must match a recorded recipient:
	// "address" (default) the same address, after greylist.NormalizeMailbox;
	// "domain" any address of its domain, so a reply from a colleague of
	// the person written to also passes (iRedAPD's
	// WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING, plugins/
	// whitelist_outbound_recipient.py). A domain shared by strangers
	// (gmail.com) then passes all of them: keep "address" unless your
	// users mostly write to companies.
	Match string `yaml:"match"`
	// LocalDomains are the domains this server receives mail for. A
	// recipient in one of them, or in the sender's own domain, is never
	// recorded: mail between local users is not a reply from outside, and
	// a recorded local address would let mail forged in its name skip
	// greylisting. Default empty: only the sender's own domain is left
	// out, which is enough for a server with one domain.
	LocalDomains []string `yaml:"local_domains"`
}

// Match values.
const (
	MatchAddress = "address"
	MatchDomain  = "domain"
)

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config { return Config{Match: MatchAddress} }

// Validate checks every key; errors name the full dotted key.
func (c Config) Validate() error {
	var errs []error
	if c.Match != MatchAddress && c.Match != MatchDomain {
		errs = append(errs, fmt.Errorf(`replies.match: must be "address" or "domain", got %q`, c.Match))
	}
	for _, d := range c.LocalDomains {
		if d == "" || strings.ContainsAny(d, "@ \t\r\n") {
			errs = append(errs, fmt.Errorf("replies.local_domains: must be domain names, got %q", d))
		}
	}
	return errors.Join(errs...)
}

// localSet is LocalDomains lowercased, without trailing dots.
func (c Config) localSet() map[string]bool {
	set := make(map[string]bool, len(c.LocalDomains))
	for _, d := range c.LocalDomains {
		set[strings.TrimSuffix(strings.ToLower(d), ".")] = true
	}
	return set
}
