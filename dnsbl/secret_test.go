package dnsbl

import (
	"strings"
	"testing"
)

// A zone that does not parse is reported without quoting it: it may hold
// a DQS key, or be the secret zone of a named list.
func TestBadZoneNotQuoted(t *testing.T) {
	for _, site := range []string{
		"SECRETKEY.zen.dq.spamhaus.net *2",
		" secretkey.zen.dq.spamhaus.net =127.0.0.2",
		"secretkey..zen.dq.spamhaus.net",
		"secretkey.zen.dq.spamhaus.net/x",
		"secretkey",
	} {
		c := DefaultConfig()
		c.Lists = []List{{Site: "zen.spamhaus.org"}, {Site: site, Name: "zen"}}
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "dnsbl.lists[1]: site: ") {
			t.Errorf("%q: error %v, want one naming dnsbl.lists[1]: site", site, err)
			continue
		}
		if strings.Contains(strings.ToLower(err.Error()), "secretkey") {
			t.Errorf("%q: error shows the key: %v", site, err)
		}
	}
}

// The entries of one zone share its name: a zone named in one entry and
// not in another would show in replies, logs and metrics under the
// unnamed one. The error names the keys, not the zone.
func TestZoneEntriesAgreeOnName(t *testing.T) {
	for _, lists := range [][]List{
		{{Site: "secretzone.example=127.0.0.2", Name: "private"}, {Site: "secretzone.example=127.0.0.3"}},
		{{Site: "secretzone.example=127.0.0.2"}, {Site: "SecretZone.example.*2", Name: "private"}},
		{{Site: "secretzone.example=127.0.0.2", Name: "a"}, {Site: "secretzone.example=127.0.0.3", Name: "b"}},
	} {
		c := DefaultConfig()
		c.Lists = lists
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "dnsbl.lists[0].name") || !strings.Contains(err.Error(), "dnsbl.lists[1].name") {
			t.Errorf("%v: error %v, want one naming dnsbl.lists[0].name and dnsbl.lists[1].name", lists, err)
			continue
		}
		if strings.Contains(strings.ToLower(err.Error()), "secretzone") {
			t.Errorf("%v: error shows the zone: %v", lists, err)
		}
	}
}

// A DQS zone's own display name shows no key, so an entry may leave name
// out; it then takes the name the zone's other entries give, so that the
// zone is one list in replies, logs and metrics.
func TestDQSEntriesShareName(t *testing.T) {
	c := DefaultConfig()
	c.Lists = []List{
		{Site: "secretkey.zen.dq.spamhaus.net=127.0.0.[2..3]"},
		{Site: "secretkey.zen.dq.spamhaus.net=127.0.0.[10..11]", Name: "zen.spamhaus.org"},
		{Site: "secretkey.dbl.dq.spamhaus.net", Kind: KindDomain},
	}
	es, err := c.entries()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.name)
	}
	if got := strings.Join(names, " "); got != "zen.spamhaus.org zen.spamhaus.org dbl.dq.spamhaus.net" {
		t.Errorf("display names %q", got)
	}
}

// Redacted hides the key of a DQS zone however the site is written, and
// the zone of a named list, keeping the filter and the weight.
func TestListRedacted(t *testing.T) {
	for _, tt := range []struct {
		l    List
		want string
	}{
		{List{Site: "SecretKey.zen.dq.spamhaus.net.=127.0.0.[2..11]*2"}, "REDACTED.zen.dq.spamhaus.net=127.0.0.[2..11]*2"},
		{List{Site: "  secretkey.ZEN.DQ.Spamhaus.NET.  "}, "REDACTED.zen.dq.spamhaus.net"},
		{List{Site: "x.secretkey.zen.dq.spamhaus.net*3"}, "REDACTED.zen.dq.spamhaus.net*3"},
		{List{Site: "secretzone.example=127.0.0.2", Name: "private"}, "REDACTED=127.0.0.2"},
		{List{Site: "secretkey.zen.dq.spamhaus.net bad", Name: "zen"}, "REDACTED"},
		{List{Site: "bl.spamcop.net*2"}, "bl.spamcop.net*2"},
	} {
		if got := tt.l.Redacted().Site; got != tt.want {
			t.Errorf("%q redacted to %q, want %q", tt.l.Site, got, tt.want)
		}
	}
}
