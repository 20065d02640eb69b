package spf_test

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// BenchmarkRepeatedSender is the cost of SPF for each new message of a
// client that keeps sending as one domain, the common case on a busy MX:
// one evaluation per message, each a new policy.Message. dns-queries/op
// counts the TXT queries the sender's record costs per message.
func BenchmarkRepeatedSender(b *testing.B) {
	c, srv := newChecker(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		st := state("192.0.2.1", "a@pass.test", "h.test", "i1", policy.NewMessage("i1"))
		if _, err := c.Check(ctx, st); err != nil || st.Facts.SPF != "pass" {
			b.Fatalf("got %s, %v", st.Facts.SPF, err)
		}
	}
	b.ReportMetric(float64(srv.Queries("pass.test", dns.TypeTXT))/float64(b.N), "dns-queries/op")
}
