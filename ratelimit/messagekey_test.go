package ratelimit

import (
	"context"
	"net/netip"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// A messages rule keyed by recipient_domain limits how many messages each
// recipient domain gets (README, "Rate limits": "limits how fast each
// login (or sender, client network, recipient domain, or a combination)
// sends, by messages"). A message "counts once (its first recipient
// pays)" per key: a later recipient whose domain is another key must
// still be counted, and refused, under its own key. Here x.example is
// allowed 1 message an hour; the second message to it comes as the second
// recipient of a message whose first recipient is at y.example, and must
// be deferred.
func TestMessagesRuleCountsEachKeyOfAMessage(t *testing.T) {
	cfg, err := load(t, `
rules:
  - name: per-domain
    key: [recipient_domain]
    limit: 1/1h
`)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, newMem(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(msg *policy.Message, rcpt string) policy.Result {
		t.Helper()
		r := &policy.Request{ProtocolState: "RCPT", Sender: "alice@example.org", Recipient: rcpt,
			ClientAddress: netip.MustParseAddr("192.0.2.1"), Instance: msg.Instance}
		res, err := c.Check(context.Background(), &policy.State{Req: r, Msg: msg, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	m1 := policy.NewMessage("m1")
	if res := ask(m1, "a@x.example"); !res.Action.IsDunno() {
		t.Fatalf("first message to x.example: %v, want DUNNO", res.Action)
	}
	m2 := policy.NewMessage("m2")
	if res := ask(m2, "b@y.example"); !res.Action.IsDunno() {
		t.Fatalf("first message to y.example: %v, want DUNNO", res.Action)
	}
	if res := ask(m2, "c@x.example"); !res.Action.IsDefer() {
		t.Fatalf("second message to x.example within the hour (second recipient of m2): %v (%q), want DEFER_IF_PERMIT: x.example is over its 1/1h",
			res.Action, res.Reason)
	}
}
