package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/internal/hostport"
)

// ServerConfig is the server's part of the configuration file: top-level
// keys, documented in docs/configuration.md. Values are parsed when the
// file is read (UnmarshalText, UnmarshalYAML), so nothing reparses them.
type ServerConfig struct {
	// Listen: "host:port" or "unix:/path"; several allowed. Default
	// 127.0.0.1:10040: loopback only, so nothing off the host can ask.
	// Serve takes its listeners; Listeners opens these.
	Listen []string `yaml:"listen"`
	// AllowedClients lists the client networks allowed on TCP listeners;
	// others are refused and logged. Default loopback (127.0.0.0/8,
	// ::1/128); empty allows loopback only. Unix sockets are guarded by
	// their file mode.
	AllowedClients Prefixes `yaml:"allowed_clients"`
	// SocketMode is the file mode of unix sockets. Default 0660 (owner
	// and group, e.g. postfix).
	SocketMode FileMode `yaml:"socket_mode"`
	// MaxConnections caps concurrent connections. Default 1000: ten
	// Postfix instances at default_process_limit 100. At the cap a new
	// connection closes the one idle the longest (Postfix retries on a
	// fresh connection when it finds its idle one closed: attr_clnt.c), so
	// idle sockets cannot lock Postfix out; only when every connection has
	// a request in flight is the new one closed at once, and Postfix
	// applies its default_action without waiting.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout bounds the wait for the next request after a reply.
	// Postfix closes an idle policy connection itself after
	// smtpd_policy_service_max_idle (300 s); if we closed first, Postfix
	// would find the socket readable (EOF), sleep retry_delay (1 s) and
	// reconnect (attr_clnt.c), so the default, 330s, is longer.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds reading a request once its first byte arrived,
	// and the wait for the first request of a connection: Postfix
	// connects only when it has a request and writes it at once
	// (attr_clnt.c, auto_clnt.c), so a client that stays silent after
	// connecting, or stalls mid-request, is broken or hostile. Default 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing one reply: a write blocked that long
	// fails and ends the connection. The deadline is moved forward once
	// half of it has passed rather than for every reply, so a write may
	// also fail after half of it. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Limits on one request; defaults in DefaultLimits.
	Limits `yaml:",inline"`
}

// DefaultServerConfig returns the documented defaults.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Listen: []string{"127.0.0.1:10040"},
		AllowedClients: Prefixes{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
		SocketMode:     0o660,
		MaxConnections: DefaultMaxConns,
		IdleTimeout:    DefaultIdleTimeout,
		ReadTimeout:    DefaultReadTimeout,
		WriteTimeout:   DefaultWriteTimeout,
		Limits:         DefaultLimits,
	}
}

// Validate checks every key; errors name the key.
func (c ServerConfig) Validate() error {
	if err := c.validateListen(); err != nil {
		return err
	}
	if c.SocketMode > 0o777 {
		return fmt.Errorf("socket_mode: want an octal mode like 0660, got %s", c.SocketMode)
	}
	ints := []struct {
		key       string
		v, lo, hi int
	}{
		{"max_connections", c.MaxConnections, 1, 100000},
		{"max_line_bytes", c.MaxLine, 512, 1 << 20},
		{"max_attributes", c.MaxAttrs, 8, 10000},
		{"max_request_bytes", c.MaxRequest, 1024, 16 << 20},
	}
	for _, k := range ints {
		if k.v < k.lo || k.v > k.hi {
			return fmt.Errorf("%s: must be between %d and %d, got %d", k.key, k.lo, k.hi, k.v)
		}
	}
	if err := durationIn("idle_timeout", c.IdleTimeout, time.Second, 24*time.Hour); err != nil {
		return err
	}
	if err := durationIn("read_timeout", c.ReadTimeout, 10*time.Millisecond, time.Hour); err != nil {
		return err
	}
	return durationIn("write_timeout", c.WriteTimeout, 10*time.Millisecond, time.Hour)
}

func (c ServerConfig) validateListen() error {
	if len(c.Listen) == 0 {
		return errors.New("listen: at least one address is required")
	}
	seen := map[string]bool{}
	for _, l := range c.Listen {
		if seen[l] {
			return fmt.Errorf("listen: %q is given twice", l)
		}
		seen[l] = true
		if p, ok := strings.CutPrefix(l, "unix:"); ok {
			if err := checkSocketPath(p); err != nil {
				return fmt.Errorf("listen: %q: %w", l, err)
			}
			continue
		}
		if err := hostport.Check(l, true); err != nil {
			return fmt.Errorf("listen: want host:port or unix:/path, got %q: %w", l, err)
		}
	}
	return nil
}

// maxSocketPath is the longest path a unix socket address holds: sun_path
// is 108 bytes on Linux, the last the terminating NUL (unix(7)).
const maxSocketPath = 107

func checkSocketPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New("a unix socket path must be absolute")
	case len(p) > maxSocketPath:
		return fmt.Errorf("a unix socket path holds at most %d bytes (unix(7)), this one has %d", maxSocketPath, len(p))
	}
	return nil
}

func durationIn(key string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%s: must be between %s and %s, got %s", key, lo, hi, d)
	}
	return nil
}

// Listeners opens every Listen address, unix sockets with SocketMode; on
// an error it closes those already open.
func (c ServerConfig) Listeners() ([]net.Listener, error) {
	var lns []net.Listener
	for _, addr := range c.Listen {
		ln, err := Listen(addr, fs.FileMode(c.SocketMode))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Prefixes are client networks. In the config file each is a CIDR or a
// bare address, which means that one host (/32 or /128).
type Prefixes []netip.Prefix

// UnmarshalYAML reads a sequence of networks. A sequence needs yaml.v3's
// Unmarshaler: UnmarshalText only ever sees one scalar, and each element
// would go to netip.Prefix's, which refuses a bare address.
func (p *Prefixes) UnmarshalYAML(n *yaml.Node) error {
	var ss []string
	if err := n.Decode(&ss); err != nil {
		return err
	}
	out := make(Prefixes, 0, len(ss))
	for _, s := range ss {
		pfx, err := parsePrefix(s)
		if err != nil {
			return err
		}
		out = append(out, pfx)
	}
	*p = out
	return nil
}

// parsePrefix parses a CIDR, masked to its network, or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// An IPv4-mapped network is the IPv4 one: peers are unmapped
			// before they are matched (Server.allowed), as a single
			// mapped address is below.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// FileMode is a unix permission mode written in octal, as chmod(1) takes
// it: "0660" or "660".
type FileMode fs.FileMode

// UnmarshalText parses an octal mode of at most 0777.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want an octal mode like 0660, got %q", b)
	}
	*m = FileMode(v)
	return nil
}

// MarshalText renders the mode as UnmarshalText reads it, e.g. "0660".
func (m FileMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }
