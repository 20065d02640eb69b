package greylist_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/clocktest"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// One verdict per message holds when the daemon itself ends the policy
// connection in the middle of a message. At max_connections a new
// connection closes the one idle the longest (README, "Postfix
// integration"; docs/configuration.md, max_connections: "Postfix
// reconnects and retries on its own"), and SMTPD_POLICY_README says the
// requests of one message come over the same policy connection "unless
// the policy daemon terminates the connection": the rest of the message
// (here its DATA request) then comes on a new connection, with the same
// instance. With greylist.stage: data, a new triplet after a known one is
// answered DUNNO at RCPT and "the whole message gets 450 at DATA, once"
// (README, "Greylisting"); "a pass never carries a new triplet through".
func TestDataDeferralSurvivesEvictedConnection(t *testing.T) {
	cfg := greylist.DefaultConfig()
	cfg.Stage, cfg.AWLPair, cfg.AWLClientPasses, cfg.Hostname = greylist.StageData, false, 0, "mx1.example.net"
	g, err := greylist.New(cfg, greylist.NewStore(dbtest.Open(t, db.SQLite)), greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(start)
	eng := policy.NewEngine(policy.Options{Logger: slog.New(slog.DiscardHandler), Now: clk.Now},
		[]policy.Step{{Check: g, Timeout: 2 * time.Second}})

	// known@ becomes a known triplet, and Postfix has asked at DATA.
	prime := func(state, rcpt, inst string) {
		r := &policy.Request{Request: "smtpd_access_policy", ProtocolState: state,
			ClientAddress: request("192.0.2.10", "", "").ClientAddress, ClientName: "mail.example.org",
			Sender: "alice@example.org", Recipient: rcpt, Instance: inst}
		eng.Evaluate(context.Background(), r, policy.NewMessage(inst))
	}
	prime("RCPT", "known@example.net", "p.1")
	clk.Advance(3 * time.Minute)
	prime("RCPT", "known@example.net", "p.2")
	clk.Advance(7 * time.Minute)
	prime("DATA", "", "p.3")

	srv := &policy.Server{Decider: eng, Logger: slog.New(slog.DiscardHandler)}
	srv.MaxConnections = 1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	addr := ln.Addr().String()

	const inst = "1f2e.6a1b2c3d.4e5f.0"
	ask := func(br *bufio.Reader, c net.Conn, state, client, rcpt, instance string) string {
		t.Helper()
		fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=%s\nclient_address=%s\nclient_name=mail.example.org\n"+
			"sender=alice@example.org\nrecipient=%s\ninstance=%s\n\n", state, client, rcpt, instance)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s %s: reading reply: %v", state, rcpt, err)
		}
		br.ReadString('\n')
		return strings.TrimSuffix(line, "\n")
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}

	// smtpd 1: the message's two RCPT requests.
	a, abr := dial()
	r1 := ask(abr, a, "RCPT", "192.0.2.10", "known@example.net", inst)
	r2 := ask(abr, a, "RCPT", "192.0.2.10", "new@example.net", inst)
	if strings.HasPrefix(r1, "action=DEFER") || strings.HasPrefix(r2, "action=DEFER") {
		t.Fatalf("RCPT: %q, %q; want both accepted (the deferral waits for DATA)", r1, r2)
	}
	// smtpd 2 connects: at max_connections the daemon closes smtpd 1's
	// idle connection. A connection still busy after its reply, not yet
	// idle, cannot be closed, and the new one is refused: Postfix tries
	// again on a new connection (attr_clnt.c), and so does askAnew.
	askAnew := func(state, client, rcpt, instance string) string {
		t.Helper()
		for try := 0; ; try++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=%s\nclient_address=%s\n"+
				"client_name=mail.example.org\nsender=alice@example.org\nrecipient=%s\ninstance=%s\n\n",
				state, client, rcpt, instance)
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil {
				return strings.TrimSuffix(line, "\n")
			}
			if try == 100 {
				t.Fatalf("%s %s: never answered: %v", state, rcpt, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	askAnew("RCPT", "198.51.100.20", "other@example.net", "2a2a.6a1b2c3d.1.0")
	if _, err := abr.ReadByte(); !errors.Is(err, io.EOF) && (err == nil || !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("smtpd 1's connection: %v, want it closed by the eviction", err)
	}
	// smtpd 1 reconnects for the same message's DATA request.
	got := askAnew("DATA", "192.0.2.10", "", inst)
	if !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
		t.Fatalf("DATA of the message, after its connection was evicted: %q; want DEFER_IF_PERMIT: "+
			"new@example.net's new triplet was accepted at RCPT and now passes without a retry", got)
	}
}
