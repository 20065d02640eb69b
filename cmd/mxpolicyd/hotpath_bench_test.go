package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
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
// an SQLite store, and one persistent loopback connection asking for a
// triplet that already passed, so greylisting answers from its pass cache.
// allocs/op counts every goroutine's allocations: the server's, the
// engine's, the log writer's and the decision-log writer's.
func BenchmarkKnownPassing(b *testing.B) {
	ctx := context.Background()
	cfg, err := config.Load("", checkDefaults(), func(c *config.Config) {
		c.Database = filepath.Join(b.TempDir(), "bench.db")
		c.Greylist.Delay = time.Second
		off := false
		s := c.Checks["spf"]
		s.Enabled = &off
		c.Checks["spf"] = s
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
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Each phase is a message of its own: greylisting gives one verdict
	// per message, so the deferred first attempt must not be the
	// measured message.
	request := func(instance string) []byte {
		return []byte("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
			"client_address=192.0.2.10\nclient_name=mail.example.net\nreverse_client_name=mail.example.net\n" +
			"helo_name=mail.example.net\nsender=alice@example.net\nrecipient=bob@example.com\n" +
			"recipient_count=0\nqueue_id=\ninstance=" + instance + "\nsize=0\nsasl_method=\n\n")
	}
	req := request("1a2b.5f3c4d.0")
	ask := func() []byte {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if _, err := br.ReadByte(); err != nil { // the empty line
			b.Fatal(err)
		}
		return line
	}
	ask()                               // new triplet: deferred
	time.Sleep(1100 * time.Millisecond) // greylist.delay
	req = request("1a2b.5f3c4d.1")
	ask() // passes, and is cached
	req = request("1a2b.5f3c4d.2")
	if got := ask(); !bytes.Equal(got, []byte("action=DUNNO\n")) {
		b.Fatalf("reply %q, want DUNNO from the pass cache", got)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ask()
	}
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
