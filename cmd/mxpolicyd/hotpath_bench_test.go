package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// BenchmarkKnownPassing is scripts/bench.sh's "known passing" case in one
// process: the daemon as serve wires it (scripts/bench/greylist.yaml:
// whitelist and greylisting, SPF off, no DNS lists, the decision log on,
// the Info decision line through asynclog to a discarded text handler) on
// an SQLite store, and persistent loopback connections, 8 per CPU, asking
// for a triplet that already passed, so greylisting answers from its pass
// cache. Each request is a message of its own, as mxpolicyd-load sends
// them. allocs/op and cpu-ns/op count every goroutine's work: the
// server's, the engine's, the log writer's, the decision-log writer's and
// the clients'; the clients' share is the same in every build, so the
// figures compare builds.
func BenchmarkKnownPassing(b *testing.B) {
	ctx := context.Background()
	cfg, err := config.Load("", checkDefaults(), func(c *config.Config) {
		c.Database = filepath.Join(b.TempDir(), "bench.db")
		c.Greylist.Delay = time.Second
		off := false
		for _, name := range []string{"spf", "replies"} {
			s := c.Checks[name]
			s.Enabled = &off
			c.Checks[name] = s
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	alog := asynclog.New(cfg.Logger(io.Discard).Handler(), asynclog.Options{})
	defer closeDaemonLogger(alog)
	d, err := openDaemon(ctx, cfg, slog.New(alog))
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	waitStoreReady(b, d)
	srv, ln := serveLoopback(b, d)
	defer srv.Shutdown(ctx)
	// Greylisting gives one verdict per message, so the deferred first
	// attempt must not be the measured message.
	warm := dialPolicy(b, ln.Addr().String())
	defer warm.close()
	warm.ask(b)                         // new triplet: deferred
	time.Sleep(1100 * time.Millisecond) // greylist.delay
	warm.ask(b)                         // passes, and is cached
	if got := warm.ask(b); !bytes.Equal(got, dunnoLine) {
		b.Fatalf("reply %q, want DUNNO from the pass cache", got)
	}
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		c := dialPolicy(b, ln.Addr().String())
		defer c.close()
		for pb.Next() {
			if got := c.ask(b); !bytes.Equal(got, dunnoLine) {
				b.Errorf("reply %q, want DUNNO from the pass cache", got)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// policyClient is one persistent connection sending the same RCPT
// request, each time as a new message: its instance is a counter written
// in place, so the client allocates nothing.
type policyClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
	n   []byte // the instance's counter, within req
}

var policyClients atomic.Int64

var dunnoLine = []byte("action=DUNNO\n")

func dialPolicy(b *testing.B, addr string) *policyClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	req := []byte("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=192.0.2.10\nclient_name=mail.example.net\nreverse_client_name=mail.example.net\n" +
		"helo_name=mail.example.net\nsender=alice@example.net\nrecipient=bob@example.com\n" +
		"recipient_count=0\nqueue_id=\nsize=0\nsasl_method=\ninstance=" +
		fmt.Sprintf("%x", policyClients.Add(1)) + ".0000000000.0\n\n")
	at := bytes.LastIndexByte(req, '.') - 10
	return &policyClient{c: c, br: bufio.NewReader(c), req: req, n: req[at : at+10]}
}

// ask sends the request as the next message and returns the action line.
func (p *policyClient) ask(b *testing.B) []byte {
	for i := len(p.n) - 1; i >= 0; i-- { // count up, in decimal digits
		if p.n[i]++; p.n[i] <= '9' {
			break
		}
		p.n[i] = '0'
	}
	if _, err := p.c.Write(p.req); err != nil {
		b.Fatal(err)
	}
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.br.ReadByte(); err != nil { // the empty line
		b.Fatal(err)
	}
	return line
}

func (p *policyClient) close() { p.c.Close() }

// cpuTime is the process's user and system time so far: every
// goroutine's, the writers' included.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func waitStoreReady(b *testing.B, d *daemon) {
	for deadline := time.Now().Add(10 * time.Second); d.db.Ready() != nil; {
		if time.Now().After(deadline) {
			b.Fatalf("store not ready: %v", d.db.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serveLoopback(b testing.TB, d *daemon) (*policy.Server, net.Listener) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &policy.Server{ServerConfig: d.cfg.ServerConfig, Decider: d.engine, Logger: d.log, Conns: d.metrics}
	go srv.Serve(ln)
	return srv, ln
}
