package dnsbl

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseSite(t *testing.T) {
	tests := []struct {
		in     string
		zone   string
		weight float64
		match  []string
		miss   []string
	}{
		{"zen.spamhaus.org", "zen.spamhaus.org", 1, nil, nil},
		{"Zen.Spamhaus.org.*2", "zen.spamhaus.org", 2, nil, nil},
		{"zen.spamhaus.org=127.0.0.[2..11]*3", "zen.spamhaus.org", 3,
			[]string{"127.0.0.2", "127.0.0.11"}, []string{"127.0.0.1", "127.0.0.12", "127.0.1.2"}},
		{"list.dnswl.org=127.0.[0..255].[1;3]*-2.5", "list.dnswl.org", -2.5,
			[]string{"127.0.5.1", "127.0.15.3"}, []string{"127.0.5.2", "127.0.5.0"}},
		{"example.com=127.0.0.[2;4;6..8]", "example.com", 1,
			[]string{"127.0.0.2", "127.0.0.4", "127.0.0.7"}, []string{"127.0.0.3", "127.0.0.5", "127.0.0.9"}},
		{"bl.example=127.0.0.2", "bl.example", 1, []string{"127.0.0.2"}, []string{"127.0.0.3"}},
	}
	for _, tt := range tests {
		s, err := parseSite(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if s.zone != tt.zone || s.weight != tt.weight {
			t.Errorf("%s: zone %q weight %v", tt.in, s.zone, s.weight)
		}
		for _, a := range tt.match {
			if !s.filter.match(netip.MustParseAddr(a)) {
				t.Errorf("%s must match %s", tt.in, a)
			}
		}
		for _, a := range tt.miss {
			if s.filter.match(netip.MustParseAddr(a)) {
				t.Errorf("%s must not match %s", tt.in, a)
			}
		}
	}
	for _, bad := range []string{"", "zen", "zen.example=127.0.0", "zen.example=127.0.0.[2..1]",
		"zen.example=127.0.0.[2..11", "zen.example=127.0.0.256", "zen.example*x", "zen.example*0",
		"zen example", "zen.example=127.0.0.[]"} {
		if _, err := parseSite(bad); err == nil {
			t.Errorf("%q must not parse", bad)
		}
	}
}

func TestErrorCode(t *testing.T) {
	for a, isErr := range map[string]bool{
		"127.0.0.2": false, "127.0.0.11": false, "127.0.1.2": false, "127.0.5.3": false,
		"127.255.255.252": true, "127.255.255.254": true, "127.255.255.255": true, "127.255.255.1": true,
		"127.0.1.255": true, "127.0.9.255": true, "127.0.0.1": true, "10.0.0.1": true, "::1": true,
	} {
		if got := errorCode(netip.MustParseAddr(a)) != ""; got != isErr {
			t.Errorf("%s: error=%v, want %v", a, got, isErr)
		}
	}
}

func TestReverse(t *testing.T) {
	if got := reverse(netip.MustParseAddr("192.0.2.10")); got != "10.2.0.192" {
		t.Errorf("v4: %s", got)
	}
	// RFC 5782 §2.4: 32 nibbles, least significant first.
	want := "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
	if got := reverse(netip.MustParseAddr("2001:db8:1:2:3:4:567:89ab")); got != want {
		t.Errorf("v6: %s\nwant %s", got, want)
	}
}

func TestYAML(t *testing.T) {
	src := `
lists:
  - zen.spamhaus.org=127.0.0.[2..11]*2
  - site: abcdefghijklmnopqrstuvwxyz.dbl.dq.spamhaus.net=127.0.1.[2..99]
    kind: domain
    identities: [sender, helo]
  - site: list.dnswl.org=127.0.[0..255].[1..3]*-5
    name: dnswl
reject_threshold: 2
timeout: 1500ms
`
	cfg := DefaultConfig()
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != 1500*time.Millisecond || cfg.MaxTTL != time.Hour || len(cfg.Lists) != 3 {
		t.Fatalf("%+v", cfg)
	}
	var names []string
	for _, l := range cfg.Lists {
		e, _ := l.entry()
		names = append(names, e.name)
	}
	if got := strings.Join(names, " "); got != "zen.spamhaus.org dbl.dq.spamhaus.net dnswl" {
		t.Errorf("display names %q", got)
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		key string
		mod func(*Config)
	}{
		{"dnsbl.lists[1]: site", func(c *Config) { c.Lists = []List{{Site: "a.example"}, {Site: "bad"}} }},
		{"dnsbl.lists[0]: kind", func(c *Config) { c.Lists = []List{{Site: "a.example", Kind: "url"}} }},
		{"dnsbl.lists[0]: identities", func(c *Config) { c.Lists = []List{{Site: "a.example", Identities: []Identity{Helo}}} }},
		{"dnsbl.lists[0]: identities", func(c *Config) {
			c.Lists = []List{{Site: "a.example", Kind: KindDomain, Identities: []Identity{"rcpt"}}}
		}},
		{"dnsbl.reject_threshold", func(c *Config) { c.RejectThreshold = 0 }},
		{"dnsbl.reject_threshold", func(c *Config) { c.RejectThreshold = math.NaN() }},
		{"dnsbl.reject_threshold", func(c *Config) { c.RejectThreshold = math.Inf(1) }},
		{"dnsbl.timeout", func(c *Config) { c.Timeout = time.Millisecond }},
		{"dnsbl.max_ttl", func(c *Config) { c.MaxTTL = time.Second }},
		{"dnsbl.cache_size", func(c *Config) { c.CacheSize = 0 }},
		{"dnsbl.pause_after", func(c *Config) { c.PauseAfter = 0 }},
		{"dnsbl.reject_reply", func(c *Config) { c.RejectReply = "DUNNO" }},
		{"dnsbl.reject_reply", func(c *Config) { c.RejectReply = "550" }},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
			t.Errorf("want an error naming %s, got %v", tt.key, err)
		}
	}
}

func TestCacheBounded(t *testing.T) {
	now := time.Now()
	c := newCache(100)
	for i := range 1000 {
		c.put(string(rune(i+0x100)), answer{expires: now.Add(time.Hour)}, now)
	}
	if n := c.len(); n > 100 {
		t.Fatalf("cache grew to %d entries, bound 100", n)
	}
}

func TestSanitize(t *testing.T) {
	got := sanitize("See\r\n http://x/KEY.ZEN.dq.example\x00 \xff été", "key.zen.dq.example", "zen")
	if got != "See http://x/zen t" {
		t.Errorf("%q", got)
	}
}

// A sweep of a full cache (a walk of the whole map) always makes room for
// a tenth of it, however few entries have expired: else, with one entry
// expiring per insert, every insert would walk the map.
func TestCacheSweepMakesRoom(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	const max = 1000
	c := newCache(max)
	for i := range max { // entry i expires at t0 + i+1 s
		c.put(fmt.Sprint("old", i), answer{expires: t0.Add(time.Duration(i+1) * time.Second)}, t0)
	}
	c.put("new", answer{expires: t0.Add(time.Hour)}, t0.Add(1500*time.Millisecond)) // one has expired
	if n := c.len(); n > max-max/10 {
		t.Errorf("after a sweep that found one entry expired: %d entries of %d, want room for a tenth", n, max)
	}
}
