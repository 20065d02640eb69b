package whitelist

import (
	"fmt"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// benchIndex is a large site's whitelist: the testdata lists plus ten
// thousand generated entries of every kind, with a dozen regexes.
func benchIndex(b *testing.B) *index {
	b.Helper()
	files, err := readFile("testdata/whitelist_clients", FormatClients)
	if err != nil {
		b.Fatal(err)
	}
	var gen []Entry
	add := func(k Kind, v string) {
		p, err := parseValue(k, v)
		if err != nil {
			b.Fatal(err)
		}
		gen = append(gen, Entry{Kind: k, Value: p.key, pat: p})
	}
	for i := range 4000 {
		add(Client, fmt.Sprintf("100.%d.%d.0/24", i/256, i%256))
		add(Client, fmt.Sprintf("2001:db8:%x::/48", i))
	}
	for i := range 1000 {
		add(ClientName, fmt.Sprintf("mta%d.sender%d.example", i, i))
		add(Sender, fmt.Sprintf("news%d.example", i))
		add(Recipient, fmt.Sprintf("user%d@example.com", i))
	}
	for i := range 12 {
		add(ClientName, fmt.Sprintf(`/^out%d-[0-9]+\.pool\.example$/`, i))
	}
	roles, _ := DefaultConfig().roleEntries()
	return newIndex(roles, files, gen)
}

func BenchmarkMatch(b *testing.B) {
	ix := benchIndex(b)
	cases := []struct {
		name string
		req  *policy.Request
	}{
		{"miss-v4-verified", rq("198.18.3.4", "mail.unlisted.example.net", "alice@shop.example", "bob@example.com")},
		{"miss-v6-unverified", rq("2001:db9::1", "", "alice@shop.example", "bob@example.com")},
		{"hit-v4-prefix", rq("100.3.7.9", "", "alice@shop.example", "bob@example.com")},
		{"hit-host-suffix", rq("198.18.3.4", "a.mta500.sender500.example", "alice@shop.example", "bob@example.com")},
		{"hit-recipient", rq("198.18.3.4", "", "alice@shop.example", "user999+x@example.com")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ix.match(c.req, t0)
			}
		})
	}
}
