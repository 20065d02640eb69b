package dnsbl

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Kind says what a list is asked about.
type Kind string

const (
	KindIP     Kind = "ip"     // the client address (DNSBL, DNSWL)
	KindDomain Kind = "domain" // names (RHSBL), see Identity
)

// Identity is a name a domain list is asked about.
type Identity string

const (
	Sender     Identity = "sender"      // the MAIL FROM domain
	Helo       Identity = "helo"        // the HELO/EHLO name
	ClientName Identity = "client_name" // the verified (forward-confirmed) client name
)

// AllIdentities is the default for domain lists: Spamhaus recommends
// checking DBL against the sender domain, the HELO name and the rDNS name.
var AllIdentities = []Identity{Sender, Helo, ClientName}

// List is one configured list. In YAML it is either a map or, as a
// shorthand, just the site string:
//
//	lists:
//	  - zen.spamhaus.org=127.0.0.[2..11]*2
//	  - site: KEY.dbl.dq.spamhaus.net=127.0.1.[2..99]
//	    name: dbl.spamhaus.org
//	    kind: domain
//	    identities: [sender, helo]
//	  - site: rbl.internal.example
//	    self_check: false
type List struct {
	// Site is "zone[=filter][*weight]" as in postscreen_dnsbl_sites: the
	// filter matches reply addresses, e.g. 127.0.0.[2..11]; the weight
	// (default 1) is added once when any reply matches; a negative weight
	// makes the list an allowlist (DNSWL).
	Site string `yaml:"site"`
	// Name is what replies and logs call the list. Default: the zone, with
	// the key label removed for Spamhaus DQS zones (KEY.zen.dq.spamhaus.net
	// shows as zen.dq.spamhaus.net), so a DQS key never reaches a client.
	// Set it for any other list whose zone holds a secret. The entries of
	// one zone share it (Config.entries).
	Name string `yaml:"name"`
	// Kind is "ip" (default) or "domain".
	Kind Kind `yaml:"kind"`
	// Identities are the names a domain list is asked about. Default: all
	// of sender, helo, client_name.
	Identities []Identity `yaml:"identities"`
	// SelfCheck, default true, has the list probed at its RFC 5782 §5
	// test points every dnsbl.self_check_interval (selfcheck.go). Turn it
	// off for a private list that publishes none; entries of one zone
	// must agree.
	SelfCheck *bool `yaml:"self_check,omitempty"`
}

// UnmarshalYAML accepts the site-string shorthand as well as the map form.
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = List{Site: n.Value}
		return nil
	}
	type plain List
	return n.Decode((*plain)(l))
}

// Config is the dnsbl section of the configuration file.
type Config struct {
	// Lists are queried in parallel for every RCPT. Default: none.
	Lists []List `yaml:"lists"`
	// RejectThreshold: a score at or above it answers the reject reply.
	// Default 1, as postscreen_dnsbl_threshold: with the default weight of
	// 1, one listing rejects, like reject_rbl_client. Raise it (and give
	// weights) to require several lists to agree.
	RejectThreshold float64 `yaml:"reject_threshold"`
	// Timeout caps the one deadline for all lists together. Default 0: no
	// cap of its own, the lists have the dnsbl check's share of the
	// request budget (checks.dnsbl.timeout); a value above that share
	// changes nothing. Lists answer in milliseconds from a warm local
	// resolver (postscreen allows 10s, but it does not hold an SMTP
	// command waiting). A query abandoned at the deadline still runs to
	// this cap, or else to dns.timeout, so its answer reaches the cache.
	Timeout time.Duration `yaml:"timeout"`
	// MinTTL and MaxTTL clamp how long answers are cached, positive and
	// negative (the negative TTL comes from the SOA, RFC 2308). Defaults
	// 60s and 1h, as postscreen_dnsbl_min_ttl/max_ttl.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// CacheSize bounds the number of cached answers. Default 100000,
	// a few tens of MB at most.
	CacheSize int `yaml:"cache_size"`
	// PauseAfter consecutive failures (timeout, SERVFAIL, error codes such
	// as 127.255.255.254) pause a list for PauseFor, so a dead or
	// rate-limited list does not cost its timeout on every request.
	// Defaults 5 and 5m (SpamAssassin's dns_block_time is 300s; postfwd
	// disables a list after 10 timeouts for 20m). After a pause one more
	// failure pauses it again; one success clears the count.
	PauseAfter int           `yaml:"pause_after"`
	PauseFor   time.Duration `yaml:"pause_for"`
	// RejectReply is the reply template. Placeholders: {list} (display
	// name), {class} ("Client host", "Sender address", "Helo command"),
	// {what} (the address or name looked up), {code} (the reply address),
	// {txt} (the list's TXT record, sanitized), {reason} ("; " + txt, or
	// empty). Default mirrors Postfix's default_rbl_reply:
	// "554 5.7.1 Service unavailable; {class} [{what}] blocked using {list}{reason}".
	RejectReply string `yaml:"reject_reply"`
	// SelfCheckInterval is how often every list is probed at its RFC 5782
	// §5 test points, first at start; a list that fails is ignored until
	// it passes again (selfcheck.go). Default 5m: a broken list is caught
	// within minutes at two queries per list per probe. 0 turns it off.
	SelfCheckInterval time.Duration `yaml:"self_check_interval"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		RejectThreshold:   1,
		MinTTL:            time.Minute,
		MaxTTL:            time.Hour,
		CacheSize:         100000,
		PauseAfter:        5,
		PauseFor:          5 * time.Minute,
		RejectReply:       "554 5.7.1 Service unavailable; {class} [{what}] blocked using {list}{reason}",
		SelfCheckInterval: 5 * time.Minute,
	}
}

// Validate checks every key; errors name the dotted key.
func (c Config) Validate() error {
	if err := c.validateLists(); err != nil {
		return err
	}
	switch {
	case !(c.RejectThreshold > 0) || math.IsInf(c.RejectThreshold, 1):
		// Written so that NaN fails too: every comparison with it is
		// false, so a score would never reach it in one check and always
		// in another.
		return fmt.Errorf("dnsbl.reject_threshold: must be a finite number greater than 0, got %v", c.RejectThreshold)
	case c.Timeout != 0 && (c.Timeout < 10*time.Millisecond || c.Timeout > 30*time.Second):
		return fmt.Errorf("dnsbl.timeout: must be 0 (the check's timeout) or between 10ms and 30s, got %q", c.Timeout)
	case c.MinTTL < 0:
		return fmt.Errorf("dnsbl.min_ttl: must not be negative, got %q", c.MinTTL)
	case c.MaxTTL < c.MinTTL:
		return fmt.Errorf("dnsbl.max_ttl: must be at least min_ttl (%s), got %q", c.MinTTL, c.MaxTTL)
	case c.CacheSize < 1:
		return fmt.Errorf("dnsbl.cache_size: must be at least 1, got %d", c.CacheSize)
	case c.PauseAfter < 1:
		return fmt.Errorf("dnsbl.pause_after: must be at least 1, got %d", c.PauseAfter)
	case c.PauseFor < 0:
		return fmt.Errorf("dnsbl.pause_for: must not be negative, got %q", c.PauseFor)
	case c.SelfCheckInterval != 0 && c.SelfCheckInterval < 10*time.Second:
		return fmt.Errorf("dnsbl.self_check_interval: must be 0 (off) or at least 10s, got %q", c.SelfCheckInterval)
	}
	if _, err := renderReply(c.RejectReply, replyVars{list: "list.example", class: "Client host",
		what: "192.0.2.1", code: "127.0.0.2", txt: "listed"}); err != nil {
		return fmt.Errorf("dnsbl.reject_reply: %w", err)
	}
	return nil
}

// validateLists checks each entry, and that the entries of one zone agree
// on what belongs to the zone (entries).
func (c Config) validateLists() error {
	_, err := c.entries()
	return err
}

// entries parses every list. The entries of one zone must agree on
// self_check, since the self-check judges a zone, whose test points all
// its entries share; and on name, since the zone is one list in replies,
// logs and metrics, and a zone named in one entry is secret in all.
// Only a Spamhaus DQS zone's entry may leave name out when another gives
// it: its own display name shows no key. It then takes the given name.
func (c Config) entries() ([]*entry, error) {
	es := make([]*entry, len(c.Lists))
	first, named := map[string]int{}, map[string]int{}
	for i, l := range c.Lists {
		e, err := l.entry()
		if err != nil {
			return nil, fmt.Errorf("dnsbl.lists[%d]: %w", i, err)
		}
		es[i] = e
		if _, ok := first[e.zone]; !ok {
			first[e.zone] = i
		}
		if _, ok := named[e.zone]; !ok && l.Name != "" {
			named[e.zone] = i
		}
	}
	for i, e := range es {
		if err := c.agree(es, i, first[e.zone], named); err != nil {
			return nil, err
		}
	}
	return es, nil
}

// agree checks entry i against the zone's first entry, j, and its first
// named one, and gives it that name if it has none. Errors name the
// keys, never the zone, which may be secret.
func (c Config) agree(es []*entry, i, j int, named map[string]int) error {
	e := es[i]
	if k, ok := named[e.zone]; ok && k != i {
		switch {
		case c.Lists[i].Name == "" && isDQS(e.zone):
			e.name = es[k].name
		case c.Lists[i].Name == "":
			return fmt.Errorf("dnsbl.lists[%d].name: must be given, as dnsbl.lists[%d].name is for the same zone "+
				"(entries of one zone share its name)", i, k)
		case c.Lists[i].Name != c.Lists[k].Name:
			return fmt.Errorf("dnsbl.lists[%d].name: must be the same as dnsbl.lists[%d].name "+
				"(entries of one zone share its name)", i, k)
		}
	}
	if e.selfCheck != es[j].selfCheck {
		return fmt.Errorf("dnsbl.lists[%d].self_check: every entry of list %s must say the same", i, e.name)
	}
	return nil
}

// entry parses and completes one list.
func (l List) entry() (*entry, error) {
	s, err := parseSite(l.Site)
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	e := &entry{site: s, name: l.Name, kind: l.Kind, ids: l.Identities, selfCheck: l.SelfCheck == nil || *l.SelfCheck}
	if e.name == "" {
		e.name = displayName(s.zone)
	}
	if strings.ContainsAny(e.name, "\r\n\x00") {
		return nil, fmt.Errorf("name: must be one line, got %q", e.name)
	}
	switch e.kind {
	case "":
		e.kind = KindIP
	case KindIP, KindDomain:
	default:
		return nil, fmt.Errorf("kind: must be ip or domain, got %q", l.Kind)
	}
	return e, e.checkIdentities()
}

func (e *entry) checkIdentities() error {
	if e.kind == KindIP {
		if len(e.ids) > 0 {
			return fmt.Errorf("identities: only for kind: domain")
		}
		return nil
	}
	if len(e.ids) == 0 {
		e.ids = AllIdentities
	}
	for _, id := range e.ids {
		if id != Sender && id != Helo && id != ClientName {
			return fmt.Errorf("identities: %q is not sender, helo or client_name", id)
		}
	}
	return nil
}

// dqsSuffix ends the zones of Spamhaus DQS, <key>.<list>.dq.spamhaus.net
// (Spamhaus's "DQS queries" page), where the labels before <list> are the
// customer's key.
const dqsSuffix = ".dq.spamhaus.net"

// dqsPublic is a DQS zone without its key: the last four labels,
// <list>.dq.spamhaus.net. ok is false for any other zone.
func dqsPublic(zone string) (public string, ok bool) {
	labels := strings.Split(zone, ".")
	if !strings.HasSuffix(zone, dqsSuffix) || len(labels) < 5 {
		return "", false
	}
	return strings.Join(labels[len(labels)-4:], "."), true
}

func isDQS(zone string) bool {
	_, ok := dqsPublic(zone)
	return ok
}

// displayName hides the key of a DQS zone.
func displayName(zone string) string {
	if p, ok := dqsPublic(zone); ok {
		return p
	}
	return zone
}

// Redacted returns l safe to print: the key of a DQS zone becomes
// REDACTED (REDACTED.zen.dq.spamhaus.net), and so does the whole zone of
// a list given a name, which is how an admin says "do not show this
// zone". The zone is read as the check reads it (parseSite), whatever the
// case, spaces or trailing dot; a site that does not parse is hidden
// whole.
func (l List) Redacted() List {
	st, err := parseSite(l.Site)
	_, tail := cutSite(l.Site)
	switch p, dqs := dqsPublic(st.zone); {
	case err != nil:
		l.Site = "REDACTED"
	case dqs:
		l.Site = "REDACTED." + p + tail
	case l.Name != "":
		l.Site = "REDACTED" + tail
	}
	return l
}

// entry is a List ready to use.
type entry struct {
	site
	name      string
	kind      Kind
	ids       []Identity
	selfCheck bool
}

func (e *entry) asks(id Identity) bool { return slices.Contains(e.ids, id) }

// replyVars fill the RejectReply template.
type replyVars struct{ list, class, what, code, txt string }

func renderReply(tmpl string, v replyVars) (policy.Action, error) {
	reason := ""
	if v.txt != "" {
		reason = "; " + v.txt
	}
	s := strings.NewReplacer("{list}", v.list, "{class}", v.class, "{what}", v.what,
		"{code}", v.code, "{txt}", v.txt, "{reason}", reason).Replace(tmpl)
	a, err := policy.ParseAction(s)
	if err != nil {
		return a, err
	}
	if a.IsDunno() {
		return a, fmt.Errorf("%q would not refuse anything", tmpl)
	}
	return a, nil
}
