// Package config holds mxpolicyd's one configuration struct: defaults, then
// the YAML file, then the environment, then command-line flags; validated
// at load, immutable afterwards. Errors name the key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
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
	"github.com/mxpolicyd/mxpolicyd/ratelimit"
	"github.com/mxpolicyd/mxpolicyd/replies"
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
	// The policy server's settings: listen, allowed_clients, socket_mode,
	// max_connections, the timeouts and the request limits. Top-level
	// keys; defaults in policy.DefaultServerConfig.
	policy.ServerConfig `yaml:",inline"`

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
	// MemoryLimitMiB is the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit), in MiB. Default 0: none, or
	// GOMEMLIMIT from the environment, which wins over this key. With
	// thousands of connections open, their goroutine stacks count as GC
	// roots and raise the heap target by their own size ("A Guide to the
	// Go Garbage Collector", GOGC); a limit trades collections for the
	// memory that would otherwise go to garbage.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`

	// Checks sets each check's time limit (its share of request_timeout)
	// and failure action. The checks and their defaults come from the
	// daemon's check table (CheckDefault).
	Checks map[string]Step `yaml:"checks"`
	// checkOrder names the known checks in the order the engine runs them.
	checkOrder []string

	DNS       resolver.Config  `yaml:"dns"`
	DNSBL     dnsbl.Config     `yaml:"dnsbl"`
	SPF       spf.Config       `yaml:"spf"`
	Whitelist whitelist.Config `yaml:"whitelist"`
	Greylist  greylist.Config  `yaml:"greylist"`
	Replies   replies.Config   `yaml:"replies"`
	// RateLimit holds the rate-limit rules (ratelimit.Config).
	RateLimit ratelimit.Config `yaml:"ratelimit"`
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
	Level  Level  `yaml:"level"`  // debug, info (default), warn, error
}

// Step is one check's time limit and the action when it fails or runs out
// of time: DUNNO (fail open; the default) or e.g. "DEFER_IF_PERMIT 4.3.0 try later".
type Step struct {
	// Enabled turns the check off with false. Default true.
	Enabled *bool         `yaml:"enabled"`
	Timeout time.Duration `yaml:"timeout"`
	OnError policy.Action `yaml:"on_error"`
}

// On reports whether the check runs.
func (s Step) On() bool { return s.Enabled == nil || *s.Enabled }

// CheckDefault is one check as the daemon's check table
// (cmd/mxpolicyd/checks.go) hands it to config: its key under checks: and
// its defaults. A []CheckDefault lists the checks in the order the engine
// runs them; config knows no check but those it is given.
type CheckDefault struct {
	Name string
	Step Step
}

// Default returns the documented defaults, with checks' defaults under
// Checks.
func Default(checks []CheckDefault) Config {
	host, _ := os.Hostname()
	dbPath := "mxpolicyd.db"
	if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
		dbPath = strings.Split(dir, ":")[0] + "/mxpolicyd.db"
	}
	c := Config{
		ServerConfig:   policy.DefaultServerConfig(),
		Database:       dbPath,
		AutoMigrate:    true,
		Log:            Log{Format: "text", Level: Level(slog.LevelInfo)},
		RequestTimeout: 6 * time.Second,
		SkipSASL:       true,
		Hostname:       host,
		Checks:         map[string]Step{},
		DNS:            resolver.DefaultConfig(),
		DNSBL:          dnsbl.DefaultConfig(),
		SPF:            spf.DefaultConfig(),
		Whitelist:      whitelist.DefaultConfig(),
		Greylist:       greylist.DefaultConfig(),
		Replies:        replies.DefaultConfig(),
		RateLimit:      ratelimit.DefaultConfig(),
		DecisionLog:    decisionlog.DefaultConfig(),
		Metrics:        metrics.DefaultConfig(),
	}
	for _, d := range checks {
		c.Checks[d.Name] = d.Step
		c.checkOrder = append(c.checkOrder, d.Name)
	}
	return c
}

// Load returns the defaults overlaid with the file at path (if path is not
// empty) and the environment, then override (flags), validated. checks
// are the checks the file may configure, in order, with their defaults.
func Load(path string, checks []CheckDefault, override func(*Config)) (*Config, error) {
	c := Default(checks)
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
		return fmt.Errorf("config: %s: %s", path, nameKeys(b, c, err))
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
		if v.OnError == (policy.Action{}) {
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
	for _, f := range []func() error{c.ServerConfig.Validate, c.validateCore, c.validateChecks,
		c.DNS.Validate, c.DNSBL.Validate, c.SPF.Validate, c.Whitelist.Validate,
		c.Greylist.Validate, c.Replies.Validate, c.RateLimit.Validate, c.DecisionLog.Validate, c.Metrics.Validate, c.validateGC} {
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

func (c *Config) validateCore() error {
	if strings.TrimSpace(c.Database) == "" {
		return errors.New("database: must be a postgres:// URL or a file path")
	}
	if _, err := db.KindOf(c.Database); err != nil {
		return fmt.Errorf("database: %w", err) // names the scheme, never the password
	}
	if !policy.HeaderHost(c.Hostname) {
		// It becomes spf.receiver and greylist.hostname unless they are
		// set; refused here, the error names the key the admin wrote.
		return fmt.Errorf("hostname: must be a host name, got %q", c.Hostname)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: must be text or json, got %q", c.Log.Format)
	}
	if m := c.MemoryLimitMiB; m != 0 && (m < MinMemoryLimitMiB || m > 1<<20) {
		return fmt.Errorf("memory_limit_mib: must be 0 (none) or between %d and %d, got %d",
			MinMemoryLimitMiB, 1<<20, m)
	}
	return durationIn("request_timeout", c.RequestTimeout, 10*time.Millisecond, MaxRequestTimeout)
}

// MinMemoryLimitMiB is the smallest memory_limit_mib: below what an idle
// daemon holds, the collector would run nearly continuously
// (runtime/debug.SetMemoryLimit).
const MinMemoryLimitMiB = 32

// MaxRequestTimeout keeps a decision under the timeout=10s recommended
// for check_policy_service in main.cf (SMTPD_POLICY_README), with room
// for the request and the reply to travel.
const MaxRequestTimeout = 8 * time.Second

func (c *Config) validateChecks() error {
	for name, s := range c.Checks {
		if !slices.Contains(c.checkOrder, name) {
			return fmt.Errorf("checks.%s: unknown check (want one of %s)", name, strings.Join(c.checkOrder, ", "))
		}
		key := "checks." + name
		if err := durationIn(key+".timeout", s.Timeout, time.Millisecond, MaxRequestTimeout); err != nil {
			return err
		}
		if err := s.OnError.Validate(); err != nil {
			return fmt.Errorf("%s.on_error: %w", key, err)
		}
		if s.OnError.IsReject() {
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
	for _, name := range c.checkOrder {
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

func durationIn(key string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%s: must be between %s and %s, got %s", key, lo, hi, d)
	}
	return nil
}

// Redacted returns a copy safe to print or log: the database password is
// masked.
func (c *Config) Redacted() Config {
	r := *c
	r.Database = db.Redact(c.Database)
	r.DNSBL.Lists = redactLists(c.DNSBL.Lists)
	r.RateLimit = c.RateLimit.Effective()
	return r
}

// redactLists hides list zones that may hold a secret, as the dnsbl
// package reads them (dnsbl.List.Redacted).
func redactLists(lists []dnsbl.List) []dnsbl.List {
	out := make([]dnsbl.List, len(lists))
	for i, l := range lists {
		out[i] = l.Redacted()
	}
	return out
}

// YAML renders the effective configuration, redacted.
func (c *Config) YAML() ([]byte, error) {
	r := c.Redacted()
	return yaml.Marshal(&r)
}
