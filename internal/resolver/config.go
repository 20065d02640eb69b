package resolver

import (
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/hostport"
)

// DefaultResolvConf is where the server comes from when none is configured.
const DefaultResolvConf = "/etc/resolv.conf"

// Config is the one DNS setting every lookup uses: DNS lists and SPF ask the
// same server, so tests and deployments point both at one place (a local
// validating resolver in production, an in-process server in tests).
type Config struct {
	// Server is the recursive resolver as host:port. Default "": the first
	// nameserver of /etc/resolv.conf. DNSBLs refuse queries arriving through
	// big public resolvers (Spamhaus answers 127.255.255.254), so production
	// should run its own, e.g. unbound on 127.0.0.1:53.
	Server string `yaml:"server"`
	// Timeout bounds one query, including a TCP retry after truncation.
	// Default 2s: a resolver that has not answered by then is usually
	// waiting on an unresponsive authority, and callers' own deadlines
	// (the request budget) are shorter still.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Timeout: 2 * time.Second}
}

// Validate checks the values an admin wrote; an empty Server is valid and
// means "from resolv.conf".
func (c Config) Validate() error {
	if c.Server != "" {
		if err := hostport.Check(c.Server, false); err != nil {
			return fmt.Errorf("dns.server: %w, got %q", err, c.Server)
		}
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > time.Minute {
		return fmt.Errorf("dns.timeout: must be between 10ms and 1m, got %q", c.Timeout)
	}
	return nil
}

// ServerFromResolvConf returns the first nameserver of a resolv.conf(5)
// file as host:port.
func ServerFromResolvConf(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("resolver: reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("resolver: no nameserver in %s", path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}
