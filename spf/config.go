package spf

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

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
	// Header queues a Received-SPF header (RFC 7208 §9.1), prepended once
	// per message when the reply would otherwise be DUNNO. Default true.
	Header bool `yaml:"header"`
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
	Actions map[string]string `yaml:"actions"`
	// Explanation is the text {explanation} stands for. go/spf ignores
	// the exp= modifier, so the explanation is ours, not the domain's.
	Explanation string `yaml:"explanation"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Header:  true,
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
	if strings.ContainsAny(c.Receiver, " \t\r\n\x00;()\"") {
		return fmt.Errorf("spf.receiver: must be a host name, got %q", c.Receiver)
	}
	if strings.ContainsAny(c.Explanation, "\r\n\x00") {
		return fmt.Errorf("spf.explanation: must be one line")
	}
	for k, v := range c.Actions {
		if !isResult(k) {
			return fmt.Errorf("spf.actions.%s: not an SPF result (want one of %s)", k, strings.Join(Results, ", "))
		}
		if _, err := render(v, c.Explanation, sampleVars); err != nil {
			return fmt.Errorf("spf.actions.%s: %w", k, err)
		}
	}
	return nil
}

func isResult(s string) bool { return slices.Contains(Results, s) }

// actionFor returns the configured template for result, or the default.
func (c Config) actionFor(result string) string {
	if a, ok := c.Actions[result]; ok {
		return a
	}
	return defaultActions()[result]
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

// vars fill the action templates.
type vars struct{ result, domain, sender, ip, helo, identity string }

var sampleVars = vars{"fail", "example.com", "user@example.com", "192.0.2.1", "mail.example.com", "mailfrom"}

func render(tmpl, explanation string, v vars) (policy.Action, error) {
	r := strings.NewReplacer("{result}", v.result, "{domain}", v.domain, "{sender}", v.sender,
		"{ip}", v.ip, "{helo}", v.helo, "{identity}", v.identity)
	expl := r.Replace(explanation)
	s := strings.ReplaceAll(r.Replace(tmpl), "{explanation}", expl)
	return policy.ParseAction(strings.ToValidUTF8(s, "?"))
}
