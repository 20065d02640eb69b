package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// With greylist.stage: data, a new recipient after an accepted one is
// answered DUNNO at RCPT and its message is deferred at DATA. The rate
// limit, which runs after greylisting and counts only mail no other check
// refused (cmd/mxpolicyd/checks.go), does not charge that recipient: here
// a network allowed 3 recipients an hour retries its greylisted
// 2-recipient message after the delay, and both are accepted (the known
// recipient of the first attempt was charged before its message's
// deferral was known: 3 in all).
func TestRecipientDeferredAtDataIsNotCharged(t *testing.T) {
	cfg, err := load(t, `
rules:
  - name: net-rcpts
    key: [client_network]
    count: recipients
    limit: 3/1h
`)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := New(cfg, newMem(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	gcfg := greylist.DefaultConfig()
	gcfg.Stage, gcfg.AWLPair, gcfg.AWLClientPasses, gcfg.Hostname = greylist.StageData, false, 0, "mx1.example.net"
	g, err := greylist.New(gcfg, greylist.NewStore(dbtest.Open(t, db.SQLite)), greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(t0)
	eng := policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler), Now: clk.Now},
		[]policy.Step{{Check: g, Timeout: time.Second}, {Check: rl, Timeout: time.Second, ForSASL: true}})
	n := 0
	ask := func(msg *policy.Message, state, client, rcpt string) policy.Action {
		r := &policy.Request{ProtocolState: state, Sender: "alice@example.org", Recipient: rcpt,
			ClientAddress: netip.MustParseAddr(client), ClientName: "mail.example.org", Instance: msg.Instance}
		return eng.Evaluate(context.Background(), r, msg).Action
	}
	message := func() *policy.Message { n++; return policy.NewMessage(fmt.Sprintf("i%d", n)) }

	// known@ becomes a known triplet, from another network (not charged here).
	ask(message(), "RCPT", "198.51.100.7", "known@example.net")
	clk.Advance(3 * time.Minute)
	ask(message(), "RCPT", "198.51.100.7", "known@example.net")
	clk.Advance(2 * time.Hour)                // the rate limit back at rest
	ask(message(), "DATA", "203.0.113.9", "") // Postfix asks at DATA (another client)
	m := message()
	a1 := ask(m, "RCPT", "198.51.100.7", "known@example.net")
	a2 := ask(m, "RCPT", "198.51.100.7", "new@example.net")
	ad := ask(m, "DATA", "198.51.100.7", "")
	if !a1.IsDunno() || !a2.IsDunno() || ad.Verb != policy.DeferIfPermit {
		t.Fatalf("first attempt: %v, %v, DATA %v; want DUNNO, DUNNO, DEFER_IF_PERMIT at DATA", a1, a2, ad)
	}
	// The retry after the greylisting delay: 2 recipients, within 3/1h if
	// only the recipient accepted and delivered were charged (1 + 2).
	clk.Advance(3 * time.Minute)
	m = message()
	b1 := ask(m, "RCPT", "198.51.100.7", "known@example.net")
	b2 := ask(m, "RCPT", "198.51.100.7", "new@example.net")
	if b1.IsDefer() || b2.IsDefer() {
		t.Fatalf("retry after the delay: %v, %v; want both accepted: the greylisted attempt's deferred recipient was charged", b1, b2)
	}
}

// hungTake hangs Take until its context ends, as a statement on a locked table.
type hungTake struct{ *memStore }

func (hungTake) Take(ctx context.Context, _ time.Time, _ []Cell) ([]bool, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Three timeouts in a row pause the rate limit (policy/pause.go), also
// when END-OF-MESSAGE requests no rule applies to come between them: the
// engine asks Quick first at that stage too, so they never reach the
// store nor count as it answering in time.
func TestEndOfMessageKeepsRateLimitPause(t *testing.T) {
	cfg, err := load(t, "rules: [{name: user-msgs, key: [sasl_username], limit: 100/1h}]")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, hungTake{newMem()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return t0 }},
		[]policy.Step{{Check: c, Timeout: 100 * time.Millisecond, ForSASL: true, OwnTimeouts: true}})
	var kinds []string
	for i := range 5 {
		inst := fmt.Sprintf("u%d", i)
		d := eng.Evaluate(context.Background(), req("RCPT", "alice", "192.0.2.1", inst), policy.NewMessage(inst))
		kinds = append(kinds, string(d.Errors[0].Kind))
		// Meanwhile an inbound message ends on another connection.
		in := fmt.Sprintf("in%d", i)
		eng.Evaluate(context.Background(), req("END-OF-MESSAGE", "", "198.51.100.1", in), policy.NewMessage(in))
	}
	if got := fmt.Sprint(kinds); got != "[timeout timeout timeout temporary temporary]" {
		t.Fatalf("ratelimit errors of 5 requests with a hung store: %s, want three timeouts, then paused", got)
	}
}
