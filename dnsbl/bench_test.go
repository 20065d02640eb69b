package dnsbl_test

import (
	"context"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

// BenchmarkCachedDecision measures one Check when every list's answer is
// cached: three IP lists, one of them an allowlist, and a domain list
// asked about sender, HELO and client name (6 cached answers per request).
func BenchmarkCachedDecision(b *testing.B) {
	for _, bc := range []struct {
		name   string
		client string
	}{
		{"listed", "192.0.2.10"}, // rejects, TXT answer cached too
		{"clean", "192.0.2.1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, func(c *dnsbl.Config) {
				lists("zen.test=127.0.0.[2..11]*2", "spamcop.test", "wl.test=127.0.[0..255].[1..3]*-1")(c)
				c.Lists = append(c.Lists, dnsbl.List{Site: "dbl.test=127.0.1.[2..99]", Kind: dnsbl.KindDomain})
			})
			st := req(bc.client, "a@good.example", "mail.good.example", "mail.good.example")
			ctx := context.Background()
			if _, err := f.check.Check(ctx, st); err != nil { // warm the cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s := *st
				if _, err := f.check.Check(ctx, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
