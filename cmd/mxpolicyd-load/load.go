package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// options are the tool's flags.
type options struct {
	addr        string
	conns       int
	idleConns   int
	duration    time.Duration // 0: until requests are done
	requests    int64         // 0: until duration ends
	pools       pools
	perMsg      int
	seed        uint64
	timeout     time.Duration // per reply, like Postfix's timeout=10s
	allowRemote bool
}

func (o options) validate() error {
	switch {
	case o.duration <= 0 && o.requests <= 0:
		return errors.New("set -duration or -requests: a run must end by itself")
	case o.conns < 0 || o.idleConns < 0 || o.conns+o.idleConns == 0:
		return errors.New("-conns and -idle-conns must be >= 0 and not both 0")
	case o.conns == 0 && o.duration <= 0:
		return errors.New("-idle-conns alone needs -duration: how long to hold them")
	case o.pools.clients < 1 || o.pools.senders < 1 || o.pools.recipients < 1:
		return errors.New("-clients, -senders and -recipients must be >= 1")
	case o.timeout <= 0:
		return errors.New("-timeout must be > 0")
	}
	return checkTarget(o.addr, o.allowRemote)
}

// checkTarget refuses anything but loopback or a unix socket unless
// allowRemote: a load test must never hit someone else's server by a typo.
func checkTarget(addr string, allowRemote bool) error {
	if strings.HasPrefix(addr, "unix:") || allowRemote {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("-addr %q: not a loopback address or unix:/path (use -allow-remote)", addr)
	}
	return nil
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// runner shares the request budget between the workers.
type runner struct {
	opt     options
	tickets atomic.Int64
}

// take claims one attempt; every attempt, failed or not, uses a ticket,
// so a run bounded by -requests ends even when the server is down.
func (r *runner) take(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	return r.opt.requests <= 0 || r.tickets.Add(1) <= r.opt.requests
}

// run sends load until the duration or request budget is spent and
// returns what happened.
func run(ctx context.Context, opt options) (*result, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if opt.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.duration)
		defer cancel()
	}
	idle := openIdle(ctx, opt.addr, opt.idleConns)
	r := &runner{opt: opt}
	stats := make([]*workerStats, opt.conns)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range stats {
		stats[i] = newWorkerStats()
		wg.Add(1)
		go func() { defer wg.Done(); r.worker(ctx, i, stats[i]) }()
	}
	wg.Wait()
	if opt.conns == 0 {
		<-ctx.Done() // only idle connections: hold them for the duration
	}
	res := summarize(opt, time.Since(start), stats)
	res.Idle = idle.close()
	return res, nil
}

// workerStats is one connection's tally, merged at the end so workers
// share nothing while measuring.
type workerStats struct {
	sent    int64
	replies map[string]int64
	errs    map[string]int64
	lat     []time.Duration
}

func newWorkerStats() *workerStats {
	return &workerStats{replies: map[string]int64{}, errs: map[string]int64{}}
}

// worker is one persistent connection, like one smtpd process: one
// request at a time, waiting for each reply. A broken connection is
// redialled, as Postfix does.
func (r *runner) worker(ctx context.Context, id int, st *workerStats) {
	g := newGenerator(r.opt.seed, id, r.opt.pools, r.opt.perMsg)
	var c *client
	defer func() {
		if c != nil {
			c.nc.Close()
		}
	}()
	var buf []byte
	for r.take(ctx) {
		if c == nil {
			nc, err := dial(ctx, r.opt.addr)
			if err != nil {
				st.errs["dial"]++
				sleep(ctx, 100*time.Millisecond)
				continue
			}
			c = newClient(nc)
		}
		buf = g.next(buf[:0])
		st.sent++
		t0 := time.Now()
		verb, err := c.roundTrip(buf, r.opt.timeout)
		if err != nil {
			st.errs[errKind(err)]++
			c.nc.Close()
			c = nil
			continue
		}
		st.lat = append(st.lat, time.Since(t0))
		st.replies[verb]++
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// client is one policy connection.
type client struct {
	nc net.Conn
	br *bufio.Reader
}

func newClient(nc net.Conn) *client { return &client{nc: nc, br: bufio.NewReader(nc)} }

var errProtocol = errors.New("reply is not action=... followed by an empty line")

// roundTrip writes one request and reads its reply: "action=VERB text",
// then an empty line (SMTPD_POLICY_README, "Protocol description").
func (c *client) roundTrip(req []byte, timeout time.Duration) (string, error) {
	c.nc.SetDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write(req); err != nil {
		return "", err
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	end, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok || end != "\n" {
		return "", errProtocol
	}
	return verbOf(action), nil
}

// verbs are the reply classes counted; anything else is "other".
var verbs = []string{"DUNNO", "DEFER_IF_PERMIT", "PREPEND", "REJECT", "other"}

func verbOf(action string) string {
	v, _, _ := strings.Cut(action, " ")
	switch v = strings.ToUpper(v); v {
	case "DUNNO", "DEFER_IF_PERMIT", "PREPEND", "REJECT":
		return v
	}
	return "other"
}

// errKind classes a connection failure: the server closing on us,
// a reply that took longer than -timeout, a malformed reply, or I/O.
func errKind(err error) string {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, errProtocol):
		return "protocol"
	}
	return "io"
}
