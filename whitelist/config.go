package whitelist

import (
	"errors"
	"fmt"
	"time"
)

// Config is the `whitelist:` section.
type Config struct {
	// ClientsFiles are files in postgrey's whitelist_clients format
	// (addresses, prefixes, partial IPv4, host names, /regex/). Default:
	// none. postgrey's shipped list is mostly 2004-2018 host names that have
	// rotted; list what your own logs show instead.
	ClientsFiles []string `yaml:"clients_files"`
	// RecipientsFiles are files in postgrey's whitelist_recipients format
	// (user@domain, user@, domain, /regex/). Default: none.
	RecipientsFiles []string `yaml:"recipients_files"`
	// SendersFiles use the whitelist_recipients syntax for envelope senders.
	// Default: none. Senders are forged at will: these bypass greylisting only.
	SendersFiles []string `yaml:"senders_files"`
	// RoleRecipients are recipients that bypass greylisting and DNS lists,
	// in the whitelist_recipients syntax. Default: postmaster@ and abuse@,
	// the addresses a sender blocked by mistake writes to (RFC 5321 4.5.1,
	// RFC 2142), as postgrey ships. An empty list turns this off.
	RoleRecipients []string `yaml:"role_recipients"`
	// Refresh is how often a daemon polls the database's change counter.
	// Default 1s: the poll is one single-row read, and changes should reach
	// every daemon within a second or two.
	Refresh time.Duration `yaml:"refresh"`
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		RoleRecipients: []string{"postmaster@", "abuse@"},
		Refresh:        time.Second,
	}
}

// Refresh bounds: faster polling buys nothing, slower breaks the promise
// that a change is visible within seconds.
const (
	minRefresh = 100 * time.Millisecond
	maxRefresh = 5 * time.Minute
)

// Validate checks every key; errors name the full dotted key.
func (c Config) Validate() error {
	var errs []error
	if c.Refresh < minRefresh || c.Refresh > maxRefresh {
		errs = append(errs, fmt.Errorf("whitelist.refresh: must be between %s and %s, got %q",
			minRefresh, maxRefresh, c.Refresh))
	}
	for i, v := range c.RoleRecipients {
		if _, err := parseValue(Recipient, v); err != nil {
			errs = append(errs, fmt.Errorf("whitelist.role_recipients[%d]: %w", i, err))
		}
	}
	errs = append(errs, checkPaths("clients_files", c.ClientsFiles)...)
	errs = append(errs, checkPaths("recipients_files", c.RecipientsFiles)...)
	errs = append(errs, checkPaths("senders_files", c.SendersFiles)...)
	return errors.Join(errs...)
}

func checkPaths(key string, paths []string) []error {
	var errs []error
	for i, p := range paths {
		if p == "" {
			errs = append(errs, fmt.Errorf("whitelist.%s[%d]: empty file name", key, i))
		}
	}
	return errs
}

// roleEntries turns RoleRecipients into entries that bypass roleBypasses.
func (c Config) roleEntries() ([]Entry, error) {
	out := make([]Entry, 0, len(c.RoleRecipients))
	for i, v := range c.RoleRecipients {
		p, err := parseValue(Recipient, v)
		if err != nil {
			return nil, fmt.Errorf("whitelist.role_recipients[%d]: %w", i, err)
		}
		out = append(out, Entry{Kind: Recipient, Value: p.key, Source: "default role_recipients",
			pat: p, bypass: roleBypasses()})
	}
	return out, nil
}
