// Package config holds mxpolicyd's one configuration struct: defaults, then
// the YAML file, then the environment, then command-line flags; validated
// at load, immutable afterwards. Errors name the key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/decisionlog"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/metrics"
	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/spf"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

// EnvDatabase may hold the database DSN, so that a password need not be
// written in the config file or on the command line (where ps shows it).
const EnvDatabase = "MXPOLICYD_DATABASE"

// Config is the whole configuration. Every key is documented in
// docs/configuration.md (config/reference_test.go keeps it complete);
// defaults are in Default.
type Config struct {
	// Listen: "host:port" or "unix:/path"; several allowed. Default
	// 127.0.0.1:10040: loopback only, so nothing off the host can ask.
	Listen []string `yaml:"listen"`
	// AllowedClients: networks allowed to connect over TCP. Default
	// loopback (127.0.0.0/8, ::1/128); others are refused and logged.
	AllowedClients []string `yaml:"allowed_clients"`
	// SocketMode: file mode of unix sockets, octal. Default "0660" (owner
	// and group, e.g. postfix).
	SocketMode string `yaml:"socket_mode"`
	// MaxConnections caps concurrent connections. Default 1000: ten Postfix
	// instances at default_process_limit 100.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout: how long an idle connection is kept. Default 330s, over
	// Postfix's smtpd_policy_service_max_idle (300s), so Postfix closes first.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds the rest of a request once it began. Default 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds one reply. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Limits on one request; defaults in policy.DefaultLimits.
	MaxLineBytes    int `yaml:"max_line_bytes"`
	MaxAttributes   int `yaml:"max_attributes"`
	MaxRequestBytes int `yaml:"max_request_bytes"`

	// Database: a postgres:// URL (shared by all MX hosts) or a file path
	// for the embedded SQLite store. Default "mxpolicyd.db" in the working
	// directory, or in $STATE_DIRECTORY under systemd. Secret: may come
	// from $MXPOLICYD_DATABASE; printed redacted.
	Database string `yaml:"database"`
	// AutoMigrate applies pending migrations when serve starts. Default true.
	AutoMigrate bool `yaml:"auto_migrate"`

	Log Log `yaml:"log"`

	// RequestTimeout is the whole budget of one decision, split among the
	// checks: the timeouts of the enabled checks must add up to at most
	// this (checked at load), so each always gets its whole timeout.
	// Default 6s; at most 8s, under the timeout=10s we recommend in
	// main.cf (SMTPD_POLICY_README), so Postfix never waits for its own
	// timeout and the reply has time to travel.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// SkipSASL answers DUNNO to SASL-authenticated clients. Default true:
	// your own users are not greylisted or list-checked.
	SkipSASL bool `yaml:"skip_sasl"`
	// Observe computes, logs and records every decision but always answers
	// DUNNO. Default false.
	Observe bool `yaml:"observe"`
	// Hostname names this host in headers. Default: os.Hostname().
	Hostname string `yaml:"hostname"`

	// Checks sets each check's time limit (its share of request_timeout)
	// and failure action.
	Checks map[string]Step `yaml:"checks"`

	DNS       resolver.Config  `yaml:"dns"`
	DNSBL     dnsbl.Config     `yaml:"dnsbl"`
	SPF       spf.Config       `yaml:"spf"`
	Whitelist whitelist.Config `yaml:"whitelist"`
	Greylist  greylist.Config  `yaml:"greylist"`
	Metrics   metrics.Config   `yaml:"metrics"`
	// DecisionLog records every decision in the database for reports.
	DecisionLog decisionlog.Config `yaml:"decision_log"`
	GC          GC                 `yaml:"gc"`
}

// GC configures garbage collection run by the daemon itself.
type GC struct {
	// Interval runs gc inside serve this often. Default 0: off, because
	// the shipped systemd timer or cron job runs "mxpolicyd gc" hourly;
	// turn this on for a setup without either. Safe on several hosts.
	Interval time.Duration `yaml:"interval"`
}

// Log configures the log output.
type Log struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn, error
}

// Step is one check's time limit and the action when it fails or runs out
// of time: DUNNO (fail open; the default) or e.g. "DEFER_IF_PERMIT 4.3.0 try later".
type Step struct {
	// Enabled turns the check off with false. Default true.
	Enabled *bool         `yaml:"enabled"`
	Timeout time.Duration `yaml:"timeout"`
	OnError string        `yaml:"on_error"`
}

func on() *bool { t := true; return &t }

// On reports whether the check runs.
func (s Step) On() bool { return s.Enabled == nil || *s.Enabled }

// CheckNames are the checks in the order the engine runs them.
var CheckNames = []string{"whitelist", "dnsbl", "spf", "greylist"}

// Default returns the documented defaults.
func Default() Config {
	host, _ := os.Hostname()
	dbPath := "mxpolicyd.db"
	if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
		dbPath = strings.Split(dir, ":")[0] + "/mxpolicyd.db"
	}
	return Config{
		Listen:          []string{"127.0.0.1:10040"},
		AllowedClients:  []string{"127.0.0.0/8", "::1/128"},
		SocketMode:      "0660",
		MaxConnections:  policy.DefaultMaxConns,
		IdleTimeout:     policy.DefaultIdleTimeout,
		ReadTimeout:     policy.DefaultReadTimeout,
		WriteTimeout:    policy.DefaultWriteTimeout,
		MaxLineBytes:    policy.DefaultLimits.MaxLine,
		MaxAttributes:   policy.DefaultLimits.MaxAttrs,
		MaxRequestBytes: policy.DefaultLimits.MaxRequest,
		Database:        dbPath,
		AutoMigrate:     true,
		Log:             Log{Format: "text", Level: "info"},
		RequestTimeout:  6 * time.Second,
		SkipSASL:        true,
		Hostname:        host,
		// The shares add up to request_timeout (6s), so under any DNS
		// slowness each check gets its whole share and the same request
		// gets the same answer. dnsbl.timeout and spf.timeout, if set,
		// can only shorten these shares.
		Checks: map[string]Step{
			// In-memory lookups; the time is for the rare store refresh.
			"whitelist": {Enabled: on(), Timeout: 500 * time.Millisecond, OnError: "DUNNO"},
			// All lists in parallel: one round trip to the local resolver,
			// or one recursion on a cold cache.
			"dnsbl": {Enabled: on(), Timeout: 1500 * time.Millisecond, OnError: "DUNNO"},
			// Up to a few lookups in sequence (TXT, then include:, a, mx);
			// the probe reuses their answers and costs none.
			"spf": {Enabled: on(), Timeout: 2500 * time.Millisecond, OnError: "DUNNO"},
			// One upsert; a database slower than this fails open.
			"greylist": {Enabled: on(), Timeout: 1500 * time.Millisecond, OnError: "DUNNO"},
		},
		DNS:         resolver.DefaultConfig(),
		DNSBL:       dnsbl.DefaultConfig(),
		SPF:         spf.DefaultConfig(),
		Whitelist:   whitelist.DefaultConfig(),
		Greylist:    greylist.DefaultConfig(),
		DecisionLog: decisionlog.DefaultConfig(),
		Metrics:     metrics.DefaultConfig(),
	}
}

// Load returns the defaults overlaid with the file at path (if path is not
// empty) and the environment, then override (flags), validated.
func Load(path string, override func(*Config)) (*Config, error) {
	c := Default()
	if path != "" {
		if err := c.readFile(path); err != nil {
			return nil, err
		}
	}
	if v := os.Getenv(EnvDatabase); v != "" {
		c.Database = v
	}
	if override != nil {
		override(&c)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func (c *Config) readFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	defaults := c.Checks
	c.Checks = nil
	// io.EOF: an empty file, which loads as all defaults.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %s", path, nameKeys(b, err))
	}
	c.Checks = mergeSteps(defaults, c.Checks)
	return nil
}

// mergeSteps fills keys a file leaves out of a checks entry from the defaults.
func mergeSteps(def, file map[string]Step) map[string]Step {
	out := map[string]Step{}
	for k, v := range def {
		out[k] = v
	}
	for k, v := range file {
		d := def[k]
		if v.Timeout == 0 {
			v.Timeout = d.Timeout
		}
		if v.OnError == "" {
			v.OnError = d.OnError
		}
		if v.Enabled == nil {
			v.Enabled = d.Enabled
		}
		out[k] = v
	}
	return out
}

// Validate checks every key; the error names the first bad one.
func (c *Config) Validate() error {
	for _, f := range []func() error{c.validateListen, c.validateServer, c.validateCore, c.validateChecks,
		c.DNS.Validate, c.DNSBL.Validate, c.SPF.Validate, c.Whitelist.Validate,
		c.Greylist.Validate, c.DecisionLog.Validate, c.Metrics.Validate, c.validateGC} {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateGC() error {
	if c.GC.Interval != 0 {
		return durationIn("gc.interval", c.GC.Interval, time.Minute, 7*24*time.Hour)
	}
	return nil
}

func (c *Config) validateListen() error {
	if len(c.Listen) == 0 {
		return errors.New("listen: at least one address is required")
	}
	for _, l := range c.Listen {
		if p, ok := strings.CutPrefix(l, "unix:"); ok {
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("listen: unix socket path must be absolute, got %q", l)
			}
			continue
		}
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			return fmt.Errorf("listen: want host:port or unix:/path, got %q", l)
		}
	}
	if _, err := c.AllowedPrefixes(); err != nil {
		return err
	}
	if _, err := c.SocketFileMode(); err != nil {
		return err
	}
	return nil
}

func (c *Config) validateServer() error {
	checks := []struct {
		key       string
		v, lo, hi int
	}{
		{"max_connections", c.MaxConnections, 1, 100000},
		{"max_line_bytes", c.MaxLineBytes, 512, 1 << 20},
		{"max_attributes", c.MaxAttributes, 8, 10000},
		{"max_request_bytes", c.MaxRequestBytes, 1024, 16 << 20},
	}
	for _, k := range checks {
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

func (c *Config) validateCore() error {
	if strings.TrimSpace(c.Database) == "" {
		return errors.New("database: must be a postgres:// URL or a file path")
	}
	if _, err := db.KindOf(c.Database); err != nil {
		return fmt.Errorf("database: %w", err) // names the scheme, never the password
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: must be text or json, got %q", c.Log.Format)
	}
	if _, err := c.LogLevel(); err != nil {
		return err
	}
	return durationIn("request_timeout", c.RequestTimeout, 10*time.Millisecond, MaxRequestTimeout)
}

// MaxRequestTimeout keeps a decision under the timeout=10s recommended
// for check_policy_service in main.cf (SMTPD_POLICY_README), with room
// for the request and the reply to travel.
const MaxRequestTimeout = 8 * time.Second

func (c *Config) validateChecks() error {
	for name, s := range c.Checks {
		if !isCheck(name) {
			return fmt.Errorf("checks.%s: unknown check (want one of %s)", name, strings.Join(CheckNames, ", "))
		}
		key := "checks." + name
		if err := durationIn(key+".timeout", s.Timeout, time.Millisecond, MaxRequestTimeout); err != nil {
			return err
		}
		a, err := policy.ParseAction(s.OnError)
		if err != nil {
			return fmt.Errorf("%s.on_error: %w", key, err)
		}
		if a.IsReject() {
			// A failure must never lose mail: at most a temporary refusal.
			return fmt.Errorf("%s.on_error: must not reject (a failed check must not lose mail), got %q", key, s.OnError)
		}
	}
	return c.validateBudget()
}

// validateBudget makes the timeouts of the enabled checks fit
// request_timeout. Checks run one after another, so with a sum above the
// budget a slow early check would leave a later one (greylisting) less
// than its timeout or none, and the same request would get different
// answers as DNS speed varies.
func (c *Config) validateBudget() error {
	var sum time.Duration
	var parts []string
	for _, name := range CheckNames {
		if s, ok := c.Checks[name]; ok && s.On() {
			sum += s.Timeout
			parts = append(parts, fmt.Sprintf("checks.%s.timeout %s", name, s.Timeout))
		}
	}
	if sum > c.RequestTimeout {
		return fmt.Errorf("request_timeout: %s is less than the sum of the enabled checks' timeouts, %s (%s); "+
			"lower those or raise request_timeout (at most %s)", c.RequestTimeout, sum, strings.Join(parts, " + "), MaxRequestTimeout)
	}
	return nil
}

func isCheck(name string) bool { return slices.Contains(CheckNames, name) }

func durationIn(key string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%s: must be between %s and %s, got %s", key, lo, hi, d)
	}
	return nil
}

// AllowedPrefixes parses allowed_clients; a bare address means that host.
func (c *Config) AllowedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.AllowedClients {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("allowed_clients: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses a CIDR or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q", s)
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

// SocketFileMode parses socket_mode.
func (c *Config) SocketFileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("socket_mode: want an octal mode like 0660, got %q", c.SocketMode)
	}
	return os.FileMode(m), nil
}

// Limits returns the request caps as the policy server takes them.
func (c *Config) Limits() policy.Limits {
	return policy.Limits{MaxLine: c.MaxLineBytes, MaxAttrs: c.MaxAttributes, MaxRequest: c.MaxRequestBytes}
}

// Redacted returns a copy safe to print or log: the database password is
// masked.
func (c *Config) Redacted() Config {
	r := *c
	r.Database = db.Redact(c.Database)
	r.DNSBL.Lists = redactLists(c.DNSBL.Lists)
	return r
}

// redactLists hides list zones that may hold a secret: a Spamhaus DQS
// zone (KEY.zen.dq.spamhaus.net) and any list given a display name, which
// is how an admin says "do not show this zone".
func redactLists(lists []dnsbl.List) []dnsbl.List {
	out := make([]dnsbl.List, len(lists))
	for i, l := range lists {
		zone, rest := l.Site, ""
		if j := strings.IndexAny(zone, "=*"); j >= 0 {
			zone, rest = zone[:j], zone[j:]
		}
		switch {
		case strings.HasSuffix(strings.ToLower(zone), ".dq.spamhaus.net"):
			if k := strings.IndexByte(zone, '.'); k >= 0 {
				zone = "REDACTED" + zone[k:]
			}
		case l.Name != "":
			zone = "REDACTED"
		}
		l.Site = zone + rest
		out[i] = l
	}
	return out
}

// YAML renders the effective configuration, redacted.
func (c *Config) YAML() ([]byte, error) {
	r := c.Redacted()
	return yaml.Marshal(&r)
}
