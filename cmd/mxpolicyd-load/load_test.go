package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// stub answers by the recipient's number, so the tool's tally can be
// checked against what the server actually answered.
type stub struct {
	mu       sync.Mutex
	answered map[string]int64
	triplets map[string]bool
	perInst  map[string]int
}

func newStub() *stub {
	return &stub{answered: map[string]int64{}, triplets: map[string]bool{}, perInst: map[string]int{}}
}

var stubActions = []string{"DUNNO", "DEFER_IF_PERMIT 4.2.0 Greylisted", "PREPEND X-Test: 1", "REJECT listed", "450 4.7.1 other"}

func (s *stub) Decide(_ context.Context, req *policy.Request, _ *policy.Message) policy.Action {
	n := int(req.Recipient[4] - '0') // rcptN@...
	a, err := policy.ParseAction(stubActions[n%len(stubActions)])
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered[verbOf(a.String())]++
	s.triplets[req.ClientAddress.String()+"/"+req.Sender+"/"+req.Recipient] = true
	s.perInst[req.Instance]++
	return a
}

func serve(t *testing.T, d policy.Decider, maxConns int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &policy.Server{Decider: d, ServerConfig: policy.ServerConfig{MaxConnections: maxConns},
		Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, policy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func testOptions(addr string) options {
	return options{addr: addr, conns: 4, requests: 600, pools: pools{2, 3, 5},
		perMsg: 3, seed: 7, timeout: 5 * time.Second}
}

func TestRunCountsAddUp(t *testing.T) {
	s := newStub()
	opt := testOptions(serve(t, s, 0))
	res, err := run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != opt.requests || res.Answered != opt.requests || len(res.Errors) != 0 {
		t.Fatalf("sent %d answered %d errors %v, want %d, %d, none", res.Sent, res.Answered, res.Errors, opt.requests, opt.requests)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range verbs {
		if res.Replies[v] != s.answered[v] || s.answered[v] == 0 {
			t.Errorf("%s: tool counted %d, server answered %d (want equal, > 0)", v, res.Replies[v], s.answered[v])
		}
	}
	// 2 clients x 3 senders x 5 recipients: 600 requests draw every one.
	if len(s.triplets) != 30 {
		t.Errorf("distinct triplets = %d, want 30", len(s.triplets))
	}
	// Each connection's last message may be cut short by the budget.
	short := 0
	for inst, n := range s.perInst {
		if n > opt.perMsg {
			t.Errorf("instance %s had %d requests, want <= %d", inst, n, opt.perMsg)
		}
		if n < opt.perMsg {
			short++
		}
	}
	if short > opt.conns {
		t.Errorf("%d messages with fewer than %d requests, want <= one per connection", short, opt.perMsg)
	}
	l := res.Latency
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latencies not ordered: %+v", l)
	}
}

func TestRunIdleOverCapIsClosed(t *testing.T) {
	opt := testOptions(serve(t, newStub(), 5))
	opt.conns, opt.idleConns, opt.requests, opt.duration = 0, 8, 0, 300*time.Millisecond
	res, err := run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	// The server keeps max_connections and closes the rest at once.
	if res.Idle.Opened != 8 || res.Idle.ClosedByServer != 3 {
		t.Errorf("idle = %+v, want 8 opened, 3 closed by the server", res.Idle)
	}
}

func TestRunServerGoneEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opt := testOptions(addr)
	opt.requests = 8
	res, err := run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["dial"] != 8 || res.Answered != 0 {
		t.Errorf("errors %v answered %d, want 8 dial errors", res.Errors, res.Answered)
	}
}

func TestRequestParses(t *testing.T) {
	g := newGenerator(1, 0, pools{70000, 5, 5}, 2)
	br := bufio.NewReader(bytes.NewReader(append(g.next(nil), g.next(nil)...)))
	a, err := policy.ReadRequest(br, policy.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.ReadRequest(br, policy.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if a.ProtocolState != "RCPT" || !a.ClientAddress.Is4() || !strings.HasPrefix(a.Sender, "user") ||
		a.Instance == "" || a.MailVersion != "3.8.1" {
		t.Errorf("request = %+v", a)
	}
	if b.Instance != a.Instance || b.Sender != a.Sender || b.ClientAddress != a.ClientAddress || b.RecipientCount != 1 {
		t.Errorf("second RCPT of a message: %+v, first %+v", b, a)
	}
	if _, err := policy.ReadRequest(br, policy.DefaultLimits); !errors.Is(err, io.EOF) {
		t.Errorf("after two requests: %v, want EOF", err)
	}
}

func TestCheckTarget(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:10040": true, "[::1]:10040": true, "localhost:10040": true, "unix:/run/p": true,
		"192.0.2.1:10040": false, "mx.example.net:10040": false, "[2001:db8::1]:1": false, "nocolon": false,
	} {
		if err := checkTarget(addr, false); (err == nil) != ok {
			t.Errorf("checkTarget(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
	if err := checkTarget("192.0.2.1:10040", true); err != nil {
		t.Errorf("-allow-remote: %v", err)
	}
}

func TestMainCodeText(t *testing.T) {
	addr := serve(t, newStub(), 0)
	var out, errb bytes.Buffer
	code := mainCode(context.Background(), []string{"-addr", addr, "-conns", "2", "-requests", "20"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "20 sent, 20 answered") {
		t.Errorf("code %d, out %q, err %q", code, out.String(), errb.String())
	}
	if code := mainCode(context.Background(), []string{"-addr", "192.0.2.1:25"}, &out, &errb); code != 2 {
		t.Errorf("remote target: code %d, want 2", code)
	}
}
