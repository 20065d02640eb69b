package greylist

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Config is the `greylist:` section. Durations are YAML strings ("2m").
type Config struct {
	// Delay is how long a new triplet must wait before a retry passes.
	// Default 2m. Legitimate MTAs retry after minutes (Postfix's
	// minimal_backoff_time is 300s; mail-in-a-box saw many retry between
	// 200 and 285 s, then only hours later, and lowered postgrey's 300 s to
	// 180 s for that): a delay above the first retry turns a
	// few minutes into hours. 2m stays under all of those, while ratware that
	// retries within the same burst (greylist.pl uses 60 s, gross 10 s) is
	// still deferred. postgrey, SQLgrey and rspamd default to 300 s.
	Delay time.Duration `yaml:"delay"`
	// RetryWindow is how long after the first attempt a retry still
	// counts; later, the triplet starts over. Default 48h (postgrey's
	// value; SQLgrey 24h): it covers hourly and four-hourly retry schedules.
	RetryWindow time.Duration `yaml:"retry_window"`
	// MaxAge is how long a passed triplet, and an auto-whitelist entry,
	// stays valid after it was last seen. Default 35 days (840h), postgrey's
	// value since 1.16, chosen so monthly newsletters are not greylisted
	// every month.
	MaxAge time.Duration `yaml:"max_age"`
	// IPv4Prefix and IPv6Prefix group client addresses into networks: a
	// retry from another host of the same network matches. Defaults 24 and
	// 64: big senders (Outlook.com, SendGrid, Strato/GMX over IPv6) retry
	// from other hosts of their pool, and an IPv6 host owns at least a /64. 32 and 128 key by the
	// full address.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// PoolAware keys the client part by the SPF-authorizing domain when SPF
	// passed ("spf:example.com") instead of the network, so a retry from
	// any host that domain authorizes matches: the fix for O365, SES and
	// Gmail retrying from other networks (the approach of OpenSMTPD
	// filter-spfgreylist, its filter-greylist.go). It never skips greylisting; the
	// domain's hosts must still retry once. Default true.
	PoolAware bool `yaml:"pool_aware"`
	// AWLClientPasses auto-whitelists a client network after that many
	// passes, counted at most once per AWLCountInterval. Default 5
	// (postgrey's --auto-whitelist-clients). 0 turns it off.
	AWLClientPasses int `yaml:"awl_client_passes"`
	// AWLCountInterval is the minimum time between two counted passes of
	// one client. Default 1h (postgrey), so one busy burst cannot whitelist
	// a client.
	AWLCountInterval time.Duration `yaml:"awl_count_interval"`
	// AWLPair auto-whitelists a (client network or SPF domain, sender
	// domain) pair once a triplet of it passed (SQLgrey's domain AWL), so
	// the next recipient or sender of that domain is not delayed. Default
	// true.
	AWLPair bool `yaml:"awl_pair"`
	// OnlySuspicious greylists only clients that look suspicious: a positive
	// DNS list score, SPF none/neutral/softfail/fail/permerror, or no
	// verified host name. Default false (greylist everyone): Fastmail and
	// gross (its README) greylist this way to spare legitimate mail.
	OnlySuspicious bool `yaml:"only_suspicious"`
	// Text is the deferral text after DEFER_IF_PERMIT. It must start with an
	// RFC 3463 4.x.x code. Placeholders: %s seconds until a retry can pass,
	// %d the configured delay in seconds, %r the recipient domain, %% a
	// percent sign. Default "4.2.0 Greylisted, please try again in %s
	// seconds": 4.2.0 is postgrey's Exchange workaround, and the default
	// says when to retry.
	Text string `yaml:"text"`
	// Header adds "X-Greylist: delayed N seconds by mxpolicyd at HOST;
	// DATE" to a message on its first pass after a delay, once per message,
	// never naming a recipient. Default true.
	Header bool `yaml:"header"`
	// Hostname is the HOST of that header. Default: the system host name.
	Hostname string `yaml:"hostname"`
	// CacheRefresh is how long a daemon answers a known passing triplet,
	// client or pair from memory before asking the database again, which
	// also refreshes its last_seen. Default 1h (postgrey refreshes passed
	// entries at most hourly). Must be well below MaxAge, so the cache never
	// outlives the entry in the database.
	CacheRefresh time.Duration `yaml:"cache_refresh"`
	// CacheSize bounds the in-memory pass cache (entries). Default 100000,
	// about 20 MB. 0 turns the cache off.
	CacheSize int `yaml:"cache_size"`
	// Stage is where a message with a greylisted recipient is deferred
	// when deferring it at RCPT would split it: "rcpt" (default) or
	// "data". Greylisting gives one verdict per message (greylist.go,
	// msgVerdict), but a recipient accepted with 250 at RCPT cannot be
	// taken back, so a new triplet after a known one is deferred alone at
	// RCPT. "data" answers DUNNO instead and defers the whole message at
	// DATA; it needs check_policy_service in smtpd_data_restrictions too
	// (contrib/postfix/main.cf.snippet), and until Postfix has asked at
	// DATA it answers as "rcpt" does. The default keeps RCPT answers
	// right for a Postfix without that hook; "data" is recommended.
	Stage string `yaml:"stage"`
	// GCBatch is the number of rows one garbage collection statement
	// deletes; each batch is its own short transaction so serving never
	// waits long. Default 5000.
	GCBatch int `yaml:"gc_batch"`
}

// Stage values.
const (
	StageRCPT = "rcpt"
	StageData = "data"
)

// DefaultText is Text's default.
const DefaultText = "4.2.0 Greylisted, please try again in %s seconds"

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Delay:            2 * time.Minute,
		RetryWindow:      48 * time.Hour,
		MaxAge:           35 * 24 * time.Hour,
		IPv4Prefix:       24,
		IPv6Prefix:       64,
		PoolAware:        true,
		AWLClientPasses:  5,
		AWLCountInterval: time.Hour,
		AWLPair:          true,
		Text:             DefaultText,
		Header:           true,
		CacheRefresh:     time.Hour,
		CacheSize:        100000,
		GCBatch:          5000,
		Stage:            StageRCPT,
	}
}

var textCode = regexp.MustCompile(`^4\.\d{1,3}\.\d{1,3} \S`)

// Validate checks every key; errors name the full dotted key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, rule string, v any) {
		errs = append(errs, fmt.Errorf("greylist.%s: %s, got %q", key, rule, fmt.Sprint(v)))
	}
	if c.Delay < time.Second || c.Delay > time.Hour {
		bad("delay", "must be between 1s and 1h", c.Delay)
	}
	if c.RetryWindow <= c.Delay || c.RetryWindow > 30*24*time.Hour {
		bad("retry_window", "must be longer than greylist.delay and at most 720h", c.RetryWindow)
	}
	if c.MaxAge < 24*time.Hour || c.MaxAge > 400*24*time.Hour {
		bad("max_age", "must be between 24h and 9600h", c.MaxAge)
	}
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		bad("ipv4_prefix", "must be between 8 and 32", c.IPv4Prefix)
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be between 16 and 128", c.IPv6Prefix)
	}
	if c.AWLClientPasses < 0 || c.AWLClientPasses > 1000 {
		bad("awl_client_passes", "must be between 0 (off) and 1000", c.AWLClientPasses)
	}
	if c.AWLCountInterval < 0 || c.AWLCountInterval > c.MaxAge {
		bad("awl_count_interval", "must be between 0 and greylist.max_age", c.AWLCountInterval)
	}
	if err := checkText(c.Text); err != nil {
		bad("text", err.Error(), c.Text)
	}
	if !policy.HeaderHost(c.Hostname) {
		bad("hostname", "must be a host name", c.Hostname)
	}
	if c.CacheRefresh < 0 || c.CacheRefresh > c.MaxAge/2 {
		bad("cache_refresh", "must be between 0 and half of greylist.max_age", c.CacheRefresh)
	}
	if c.CacheSize < 0 {
		bad("cache_size", "must not be negative", c.CacheSize)
	}
	if c.Stage != StageRCPT && c.Stage != StageData {
		bad("stage", `must be "rcpt" or "data"`, c.Stage)
	}
	if c.GCBatch < 1 || c.GCBatch > 1000000 {
		bad("gc_batch", "must be between 1 and 1000000", c.GCBatch)
	}
	// SQLite keeps times in whole seconds and PostgreSQL in microseconds:
	// a cut-off with a fraction of a second would fall a second apart on
	// the two stores, and Peek (mxpolicyd check) would disagree with
	// SQLite's own Decide.
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"delay", c.Delay}, {"retry_window", c.RetryWindow}, {"max_age", c.MaxAge}, {"awl_count_interval", c.AWLCountInterval}} {
		if d.v%time.Second != 0 {
			bad(d.key, "must be whole seconds", d.v)
		}
	}
	return errors.Join(errs...)
}

func checkText(t string) error {
	if !textCode.MatchString(t) {
		return errors.New(`must start with an RFC 3463 code "4.x.x " and text`)
	}
	if strings.ContainsAny(t, "\r\n\x00") {
		return errors.New("must be one line")
	}
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			continue
		}
		if i+1 >= len(t) || !strings.ContainsRune("sdr%", rune(t[i+1])) {
			return errors.New("unknown placeholder (use %s, %d, %r or %%)")
		}
		i++
	}
	return nil
}
