package dnsbl_test

import (
	"testing"

	"github.com/mxpolicyd/mxpolicyd/dnsbl"
)

// TestTXTReasonIsTheRecordText: {txt}/{reason} is the list's TXT record
// as the list wrote it (sanitized), not miekg/dns's presentation form:
// a quote or a backslash in the record must not reach the reply as \" or
// \\ (resolver.UnescapeTXT, as for SPF).
func TestTXTReasonIsTheRecordText(t *testing.T) {
	f := newFixture(t, lists("zen.test=127.0.0.[2..11]"))
	f.srv.Add(`3.0.0.127.zen.test. 300 IN A 127.0.0.2`,
		`3.0.0.127.zen.test. 300 IN TXT "listed as \"spam source\"; see https://x.test/a\\b"`)
	res := f.run(t, req("127.0.0.3", "", "", ""))
	want := `554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using zen.test; listed as "spam source"; see https://x.test/a\b`
	if got := res.Action.String(); got != want {
		t.Errorf("reply %q\nwant  %q", got, want)
	}
}

// TestReplyKeepsItsClassWithoutTXT: reject_reply "450 {txt}" loads (it is
// checked with txt "listed"), but a list that publishes no TXT record
// renders it as a bare "450", which Validate refuses (Postfix reads a bare
// number as OK); the fallback then answers a permanent REJECT, so what the
// admin configured as a temporary refusal bounces the mail (access(5):
// 4NN text is a temporary, REJECT a permanent refusal).
func TestReplyKeepsItsClassWithoutTXT(t *testing.T) {
	f := newFixture(t, func(c *dnsbl.Config) {
		c.Lists = []dnsbl.List{{Site: "zen.test=127.0.0.[2..11]"}}
		c.RejectReply = "450 {txt}"
	})
	res := f.run(t, req("192.0.2.10", "", "", "")) // listed, no TXT record
	if res.Action.IsReject() || !res.Action.IsDefer() {
		t.Errorf("reject_reply %q answered %q: a %s, want a deferral", "450 {txt}", res.Action, res.Action.Class())
	}
}
