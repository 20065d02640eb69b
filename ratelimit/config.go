package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Config is the `ratelimit:` section: the rules, checked in order. With no
// rules the check is not built and costs nothing.
type Config struct {
	Rules []Rule `yaml:"rules"`
}

// DefaultConfig has no rules: rate limits are each site's own.
func DefaultConfig() Config { return Config{} }

// Kind is what a rule limits.
type Kind string

// The kinds of rule. The empty kind is KindRate.
const (
	// KindRate limits how fast one key sends: GCRA over messages,
	// recipients or bytes.
	KindRate Kind = "rate"
	// KindDistinctNetworks limits from how many client networks one key
	// (a SASL login) arrives within a window: a login used from many
	// places at once is the mark of a stolen password.
	KindDistinctNetworks Kind = "distinct_networks"
)

// Part is one component of a rule's key.
type Part string

// The key parts, each read from the request (SMTPD_POLICY_README,
// "Protocol description").
const (
	PartSASLUsername    Part = "sasl_username"
	PartSender          Part = "sender"
	PartSenderDomain    Part = "sender_domain"
	PartClientAddress   Part = "client_address"
	PartClientNetwork   Part = "client_network" // client_address within prefix_v4/prefix_v6
	PartRecipientDomain Part = "recipient_domain"
)

var allParts = []Part{PartSASLUsername, PartSender, PartSenderDomain, PartClientAddress,
	PartClientNetwork, PartRecipientDomain}

// Count is what one request costs under a rate rule.
type Count string

// The counts. The empty count is CountMessages.
const (
	// CountMessages costs 1 per message: the first recipient of an
	// instance pays, the others of the same message do not.
	CountMessages Count = "messages"
	// CountRecipients costs 1 per RCPT TO.
	CountRecipients Count = "recipients"
	// CountBytes costs the message's size, which Postfix sends only at
	// END-OF-MESSAGE (SMTPD_POLICY_README, "size"), so a bytes rule needs
	// check_policy_service in smtpd_end_of_data_restrictions.
	CountBytes Count = "bytes"
)

// Rule is one limit.
type Rule struct {
	// Name names the rule in replies, logs, metrics and commands.
	Name string `yaml:"name"`
	// Kind is rate (default) or distinct_networks.
	Kind Kind `yaml:"kind"`
	// Key lists the request attributes whose values, joined with "|",
	// make the key a limit applies to separately.
	Key []Part `yaml:"key"`
	// Count is what a rate rule counts: messages (default), recipients,
	// or bytes.
	Count Count `yaml:"count"`
	// Limit is "N/duration". For a rate rule: N of Count per duration, on
	// average. For distinct_networks: at most N client networks per key
	// within the duration.
	Limit Limit `yaml:"limit"`
	// Burst is how much of Count a key may spend at once, from rest, for
	// a rate rule. Default: N of Limit.
	Burst int64 `yaml:"burst"`
	// PrefixV4 and PrefixV6 group client addresses into networks, for
	// the client_network key part and for distinct_networks. Defaults 24
	// and 64 (greylisting's).
	PrefixV4 int `yaml:"prefix_v4"`
	PrefixV6 int `yaml:"prefix_v6"`
	// When restricts the rule to some requests; empty: all.
	When When `yaml:"when"`
	// Action is the answer when the key is over the limit (see Action).
	Action Action `yaml:"action"`
}

// When is a rule's conditions, all of which must hold.
type When struct {
	// Authenticated: true applies the rule only to SASL-authenticated
	// clients, false only to the others; unset, to both.
	Authenticated *bool `yaml:"authenticated"`
	// PolicyContext lists values of Postfix's policy_context attribute
	// (postconf(5), smtpd_policy_service_policy_context), set per
	// master.cf service, e.g. "submission".
	PolicyContext []string `yaml:"policy_context"`
	// ServerAddress and ServerPort list the addresses and ports Postfix
	// received the connection on (server_address, server_port): the
	// service's listen address, e.g. port 587.
	ServerAddress []Addr   `yaml:"server_address"`
	ServerPort    []uint16 `yaml:"server_port"`
}

// Addr is an IP address in the config, held as requests hold theirs: an
// IPv4-mapped IPv6 spelling ("::ffff:192.0.2.25", as ss(8) shows the
// IPv4 peers of a dual-stack socket) is the IPv4 address, since policy's
// request parser unmaps server_address.
type Addr struct{ netip.Addr }

// UnmarshalText parses an address and unmaps it.
func (a *Addr) UnmarshalText(b []byte) error {
	p, err := netip.ParseAddr(string(b))
	if err != nil {
		return err
	}
	a.Addr = p.Unmap()
	return nil
}

// Limit is a rate, written "N/duration": "300/1h", "50/10m".
type Limit struct {
	N   int64
	Per time.Duration
}

// UnmarshalText parses "N/duration".
func (l *Limit) UnmarshalText(b []byte) error {
	n, per, ok := strings.Cut(strings.TrimSpace(string(b)), "/")
	if !ok {
		return fmt.Errorf("limit %q: want N/duration, e.g. 300/1h", b)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil || v < 1 {
		return fmt.Errorf("limit %q: N must be a positive integer", b)
	}
	d, err := time.ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return fmt.Errorf("limit %q: want a positive duration after /, e.g. 1h", b)
	}
	*l = Limit{N: v, Per: d}
	return nil
}

// MarshalText renders the limit as it is written; the zero Limit is "".
func (l Limit) MarshalText() ([]byte, error) {
	if l.N == 0 {
		return nil, nil
	}
	return []byte(l.String()), nil
}

func (l Limit) String() string { return fmt.Sprintf("%d/%s", l.N, l.Per) }

// DefaultActionText is the deferral of a rate rule; {rule} and {key} are
// filled in. X.7.1 is "delivery not authorized, message refused" (RFC
// 3463 §3.8), and DEFER_IF_PERMIT makes it temporary: the client retries
// later, when the key is under its limit again.
const DefaultActionText = "4.7.1 {rule}: {key} sends too fast, try again later"

// DefaultHoldText is the text of a distinct_networks rule's HOLD, which
// Postfix logs with the held message (access(5), HOLD).
const DefaultHoldText = "{rule}: {key} seen from too many networks"

// Action is what a rule answers over its limit: "DEFER_IF_PERMIT text",
// "DEFER text", "REJECT text", "HOLD text", a 4NN or 5NN code with text,
// or "observe" (log and count the hit, answer nothing). Its text is a
// template: {rule} is the rule's name, {key} the key (sanitized, since it
// is client-supplied: see safeKey). The zero Action is the kind's
// default.
type Action struct {
	policy.Action
	Observe bool
}

var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// UnmarshalText parses the config-file form.
func (a *Action) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*a = Action{}
		return nil
	}
	if strings.EqualFold(s, "observe") {
		*a = Action{Observe: true}
		return nil
	}
	for _, p := range placeholder.FindAllString(s, -1) {
		if p != "{rule}" && p != "{key}" {
			return fmt.Errorf("action %q: unknown placeholder %s (use {rule} or {key})", s, p)
		}
	}
	pa, err := policy.ParseAction(s)
	if err != nil {
		return err
	}
	switch pa.Class() {
	case policy.ClassDefer, policy.ClassReject, policy.ClassHold:
	default:
		return fmt.Errorf("action %q: must defer, reject, hold or be observe", s)
	}
	*a = Action{Action: pa}
	return nil
}

// MarshalText renders the action as it is written.
func (a Action) MarshalText() ([]byte, error) {
	if a.Observe {
		return []byte("observe"), nil
	}
	return a.Action.MarshalText()
}

// Validate checks every rule; errors name the key, ratelimit.rules[i].key.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range c.Rules {
		at := fmt.Sprintf("ratelimit.rules[%d]", i)
		if r.Name != "" {
			at = fmt.Sprintf("ratelimit.rules[%d] (%s)", i, r.Name)
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used by another rule", at, r.Name))
		}
		seen[r.Name] = true
		for _, err := range r.validate() {
			errs = append(errs, fmt.Errorf("%s.%w", at, err))
		}
	}
	return errors.Join(errs...)
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// validate returns one error per bad key, each starting with the key.
func (r Rule) validate() []error {
	var errs []error
	bad := func(key, rule string, v any) {
		errs = append(errs, fmt.Errorf("%s: %s, got %q", key, rule, fmt.Sprint(v)))
	}
	if !ruleName.MatchString(r.Name) {
		bad("name", "must be 1 to 64 letters, digits, '.', '_' or '-'", r.Name)
	}
	if r.Kind != "" && r.Kind != KindRate && r.Kind != KindDistinctNetworks {
		bad("kind", "must be rate or distinct_networks", r.Kind)
	}
	if len(r.Key) == 0 {
		bad("key", "must list at least one part", "")
	}
	for _, p := range r.Key {
		if !slices.Contains(allParts, p) {
			bad("key", "parts must be sasl_username, sender, sender_domain, client_address, client_network or recipient_domain", p)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(r.Key)))) != len(r.Key) {
		bad("key", "must not repeat a part", r.Key)
	}
	if r.Limit.N == 0 {
		bad("limit", "is required, N/duration", "")
	}
	errs = append(errs, r.validateKind()...)
	if r.PrefixV4 != 0 && (r.PrefixV4 < 8 || r.PrefixV4 > 32) {
		bad("prefix_v4", "must be between 8 and 32", r.PrefixV4)
	}
	if r.PrefixV6 != 0 && (r.PrefixV6 < 16 || r.PrefixV6 > 128) {
		bad("prefix_v6", "must be between 16 and 128", r.PrefixV6)
	}
	if _, err := policy.ParseAction(r.render(r.action(), "k")); !r.Action.Observe && err != nil {
		bad("action", err.Error(), r.Action)
	}
	return errs
}

func (r Rule) validateKind() []error {
	var errs []error
	bad := func(key, rule string, v any) {
		errs = append(errs, fmt.Errorf("%s: %s, got %q", key, rule, fmt.Sprint(v)))
	}
	if r.kind() == KindDistinctNetworks {
		if r.Count != "" {
			bad("count", "is for rate rules; distinct_networks counts client networks", r.Count)
		}
		if r.Burst != 0 {
			bad("burst", "is for rate rules", r.Burst)
		}
		if slices.Contains(r.Key, PartClientAddress) || slices.Contains(r.Key, PartClientNetwork) {
			bad("key", "of a distinct_networks rule must not contain the client, whose networks it counts", r.Key)
		}
		if r.Limit.N > 1000 || r.Limit.Per > 30*24*time.Hour {
			bad("limit", "of distinct_networks must be at most 1000 networks per 720h", r.Limit)
		}
		return errs
	}
	switch r.Count {
	case "", CountMessages, CountRecipients:
	case CountBytes:
		if slices.Contains(r.Key, PartRecipientDomain) {
			// At END-OF-MESSAGE Postfix names the recipient only of a
			// one-recipient message (SMTPD_POLICY_README, "recipient").
			bad("key", "of a bytes rule must not contain recipient_domain", r.Key)
		}
	default:
		bad("count", "must be messages, recipients or bytes", r.Count)
	}
	if r.Limit.N != 0 && (r.Limit.Per < time.Second || r.Limit.Per > 30*24*time.Hour) {
		bad("limit", "duration must be between 1s and 720h", r.Limit)
	}
	if r.Burst < 0 {
		bad("burst", "must not be negative (0: the limit's N)", r.Burst)
	}
	return errs
}

// Effective is c with each rule's defaults written out (kind, count,
// burst, prefixes, action): what the check runs with, for config check to
// show rather than the zero values the file left.
func (c Config) Effective() Config {
	rules := make([]Rule, len(c.Rules))
	for i, r := range c.Rules {
		if r.Kind = r.kind(); r.Kind == KindRate { // count and burst are a rate rule's only
			r.Count, r.Burst = r.count(), r.burst()
		}
		r.PrefixV4, r.PrefixV6 = r.prefixes()
		if !r.Action.Observe {
			r.Action.Action = r.action()
		}
		rules[i] = r
	}
	c.Rules = rules
	return c
}

// kind, count, burst, prefixes and action resolve the zero values to their
// documented defaults.
func (r *Rule) kind() Kind {
	if r.Kind == "" {
		return KindRate
	}
	return r.Kind
}

func (r *Rule) count() Count {
	if r.Count == "" {
		return CountMessages
	}
	return r.Count
}

func (r *Rule) burst() int64 {
	if r.Burst == 0 {
		return r.Limit.N
	}
	return r.Burst
}

func (r *Rule) prefixes() (v4, v6 int) {
	v4, v6 = r.PrefixV4, r.PrefixV6
	if v4 == 0 {
		v4 = 24
	}
	if v6 == 0 {
		v6 = 64
	}
	return v4, v6
}

func (r *Rule) action() policy.Action {
	switch {
	case r.Action.Verb != "":
		return r.Action.Action
	case r.kind() == KindDistinctNetworks:
		return policy.Action{Verb: policy.Hold, Text: DefaultHoldText}
	}
	return policy.Action{Verb: policy.DeferIfPermit, Text: DefaultActionText}
}

// render fills the action's template with the rule's name and the key.
func (r *Rule) render(a policy.Action, key string) string {
	text := strings.NewReplacer("{rule}", r.Name, "{key}", safeKey(key)).Replace(a.Text)
	a.Text = text
	return a.String()
}

// safeKey is the key as a reply may show it to the client. The key is
// built from client-supplied values (a sender address, a login), so only
// characters that cannot break or disguise an SMTP reply line (RFC 5321
// §4.2: text is printable US-ASCII) are kept, and it is cut short.
func safeKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("@.-_+:/|=", c) >= 0) {
			b[i] = '?'
		}
	}
	if len(b) > 64 {
		return string(b[:61]) + "..."
	}
	return string(b)
}
