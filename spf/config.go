package spf

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Results are the SPF results (RFC 7208 §2.6), the keys of Config.Actions.
var Results = []string{"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}

// Config is the spf section of the configuration file.
type Config struct {
	// Timeout caps one message's SPF evaluation, all its DNS lookups and
	// the probe of passesAnyone together. Default 0: no cap of its own,
	// the evaluation has the spf check's share of the request budget
	// (checks.spf.timeout); a value above that share changes nothing.
	// RFC 7208 §4.6.4 says an evaluation "SHOULD allow at least 20
	// seconds", but an SMTP client waits on our reply; a lookup our
	// resolver does not answer in time is our failure (ErrResolver,
	// checks.spf.on_error), never a wrong verdict.
	Timeout time.Duration `yaml:"timeout"`
	// Header picks the result headers prepended once per message when the
	// reply would otherwise be DUNNO: Received-SPF (RFC 7208 §9.1),
	// Authentication-Results (RFC 8601), both, or none. Default
	// received-spf; true and false, this key's old values, read as
	// received-spf and none.
	Header HeaderMode `yaml:"header"`
	// AuthservID names this host in Authentication-Results (RFC 8601
	// §2.5). Default: Receiver, which defaults to the hostname.
	AuthservID string `yaml:"authserv_id"`
	// Receiver names this host in the header. Default: the hostname.
	Receiver string `yaml:"receiver"`
	// Actions maps each result to a reply. Keys not given keep their
	// default. Placeholders: {result}, {domain} (the domain checked),
	// {sender}, {ip}, {helo}, {identity} (mailfrom or helo),
	// {explanation}. Defaults (RFC 7372 codes, as pypolicyd-spf):
	//   fail: "550 5.7.23 {explanation}"
	//   temperror: "DEFER_IF_PERMIT 4.7.24 SPF temporary error for {domain}, try again later"
	//     (the sender's DNS failed: our resolver answered SERVFAIL; a
	//     lookup failure must not lose mail; set DUNNO to let it pass).
	//     When our own resolver gives no response there is no result:
	//     checks.spf.on_error answers instead (see ErrResolver).
	//   permerror: DUNNO (a broken record is the sender's bug, and most
	//     receivers accept; set "550 5.7.24 SPF permanent error for {domain}")
	//   pass, softfail, neutral, none: DUNNO (greylisting may treat the
	//     last three as suspicious)
	//   helo_fail: the HELO identity failed (RFC 7208 §2.3); default:
	//     whatever fail is. A DUNNO lets the MAIL FROM identity decide.
	Actions map[string]string `yaml:"actions"`
	// Explanation is the text {explanation} stands for when the domain
	// publishes no explanation of its own (exp=, RFC 7208 §6.2).
	Explanation string `yaml:"explanation"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Header:  HeaderReceivedSPF,
		Actions: defaultActions(),
		Explanation: "SPF validation failed: {domain} does not designate {ip} " +
			"as a permitted sender",
	}
}

func defaultActions() map[string]string {
	return map[string]string{
		"pass":      "DUNNO",
		"fail":      "550 5.7.23 {explanation}",
		"softfail":  "DUNNO",
		"neutral":   "DUNNO",
		"none":      "DUNNO",
		"temperror": "DEFER_IF_PERMIT 4.7.24 SPF temporary error for {domain}, try again later",
		"permerror": "DUNNO",
	}
}

// Validate checks every key; errors name the dotted key.
func (c Config) Validate() error {
	if c.Timeout != 0 && (c.Timeout < 10*time.Millisecond || c.Timeout > time.Minute) {
		return fmt.Errorf("spf.timeout: must be 0 (the check's timeout) or between 10ms and 1m, got %q", c.Timeout)
	}
	if !policy.HeaderHost(c.Receiver) {
		return fmt.Errorf("spf.receiver: must be a host name, got %q", c.Receiver)
	}
	if c.AuthservID != "" && !isAuthservID(c.AuthservID) {
		return fmt.Errorf("spf.authserv_id: must be a host name, got %q", c.AuthservID)
	}
	if _, ok := headerModes[c.Header]; !ok {
		return fmt.Errorf("spf.header: must be one of %s, got %q", headerModeNames(), c.Header)
	}
	if strings.ContainsAny(c.Explanation, "\r\n\x00") {
		return fmt.Errorf("spf.explanation: must be one line")
	}
	for k, v := range c.Actions {
		if !isResult(k) && k != HeloFail {
			return fmt.Errorf("spf.actions.%s: not an SPF result (want one of %s, or %s)", k, strings.Join(Results, ", "), HeloFail)
		}
		if _, err := render(v, c.Explanation, sampleVars); err != nil {
			return fmt.Errorf("spf.actions.%s: %w", k, err)
		}
	}
	return nil
}

func isResult(s string) bool { return slices.Contains(Results, s) }

// HeloFail is the spf.actions key for a fail of the HELO identity.
const HeloFail = "helo_fail"

// actionFor returns the configured template for result, or the default;
// helo_fail defaults to whatever fail is.
func (c Config) actionFor(result string) string {
	if a, ok := c.Actions[result]; ok {
		return a
	}
	if result == HeloFail {
		return c.actionFor("fail")
	}
	return defaultActions()[result]
}

func (c Config) authservID(receiver string) string {
	if c.AuthservID != "" {
		return c.AuthservID
	}
	return receiver
}

func (c Config) receiver() string {
	if c.Receiver != "" {
		return c.Receiver
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// vars fill the action templates. exp is the domain's own explanation
// (exp=), already expanded and made one printable line; "" when it
// published none.
type vars struct {
	result, domain, sender, ip, helo, identity, exp string
	now                                             time.Time // the request's, for an explanation's %{t} (explain.go)
}

// owned is v with its strings copied: those of a request are substrings
// of the whole request (policy.ReadRequest), which a cache entry would
// otherwise keep alive.
func (v vars) owned() vars {
	v.domain, v.sender, v.helo = strings.Clone(v.domain), strings.Clone(v.sender), strings.Clone(v.helo)
	return v
}

var sampleVars = vars{result: "fail", domain: "example.com", sender: "user@example.com", ip: "192.0.2.1",
	helo: "mail.example.com", identity: "mailfrom"}

// render fills tmpl; {explanation} is the domain's explanation if it
// gave one, else ours (spf.explanation) filled the same way.
func render(tmpl, explanation string, v vars) (policy.Action, error) {
	if !strings.Contains(tmpl, "{") {
		return policy.ParseAction(strings.ToValidUTF8(tmpl, "?")) // DUNNO, most often: nothing to fill
	}
	vals := []string{"{result}", v.result, "{domain}", v.domain, "{sender}", v.sender,
		"{ip}", v.ip, "{helo}", v.helo, "{identity}", v.identity}
	expl := v.exp
	if expl == "" {
		expl = strings.NewReplacer(vals...).Replace(explanation)
	}
	// One pass: a value (a sender spelling "{explanation}") is never
	// filled in again.
	s := strings.NewReplacer(append(vals, "{explanation}", expl)...).Replace(tmpl)
	return policy.ParseAction(strings.ToValidUTF8(s, "?"))
}

// HeaderMode says which result headers the check prepends.
type HeaderMode string

// The values of spf.header.
const (
	HeaderReceivedSPF HeaderMode = "received-spf"
	HeaderAuthResults HeaderMode = "authentication-results"
	HeaderBoth        HeaderMode = "both"
	HeaderNone        HeaderMode = "none"
)

// headerModes maps each accepted spelling to its mode; true and false
// are what spf.header was before it named headers.
var headerModes = map[HeaderMode]HeaderMode{
	HeaderReceivedSPF: HeaderReceivedSPF, HeaderAuthResults: HeaderAuthResults,
	HeaderBoth: HeaderBoth, HeaderNone: HeaderNone, "true": HeaderReceivedSPF, "false": HeaderNone,
}

func headerModeNames() string {
	return strings.Join([]string{string(HeaderReceivedSPF), string(HeaderAuthResults),
		string(HeaderBoth), string(HeaderNone)}, ", ")
}

// UnmarshalText reads a mode, or true or false for existing configs.
func (h *HeaderMode) UnmarshalText(b []byte) error {
	m, ok := headerModes[HeaderMode(strings.ToLower(strings.TrimSpace(string(b))))]
	if !ok {
		return fmt.Errorf("spf.header: must be one of %s, got %q", headerModeNames(), b)
	}
	*h = m
	return nil
}

// UnmarshalYAML reads the scalar, a YAML bool included, as UnmarshalText.
func (h *HeaderMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("spf.header: must be one of %s", headerModeNames())
	}
	return h.UnmarshalText([]byte(n.Value))
}

// MarshalText writes the mode as UnmarshalText reads it.
func (h HeaderMode) MarshalText() ([]byte, error) { return []byte(h), nil }

func (h HeaderMode) receivedSPF() bool { return h == HeaderReceivedSPF || h == HeaderBoth }
func (h HeaderMode) authResults() bool { return h == HeaderAuthResults || h == HeaderBoth }

// isAuthservID accepts a host name, the form RFC 8601 §2.5 recommends,
// and what a value (§2.2: a token or quoted-string) can carry.
func isAuthservID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}
