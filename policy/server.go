package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Decider answers one request; *Engine is the real one. msg is the state of
// the message the request belongs to (Postfix's instance attribute).
type Decider interface {
	Decide(ctx context.Context, req *Request, msg *Message) Action
}

// ConnObserver is told what happens to connections: opened and closed
// (the open connections gauge), idle ones evicted to admit another, and
// new ones refused, with reason RefusedNotAllowed or RefusedMaxConns.
// Optional.
type ConnObserver interface {
	ConnOpened()
	ConnClosed()
	ConnEvicted()
	ConnRefused(reason string)
}

// Reasons a connection is refused, as passed to ConnObserver.ConnRefused.
const (
	RefusedNotAllowed = "not_allowed"     // client outside allowed_clients
	RefusedMaxConns   = "max_connections" // at the cap and none idle
)

// Server serves the policy protocol on any number of listeners. Its zero
// value is not usable: set Decider. It is shaped like net/http.Server:
// Serve blocks, Shutdown drains.
type Server struct {
	// ServerConfig holds the settings; a zero field takes its default,
	// and no AllowedClients allows loopback only. Listen and SocketMode
	// are for Listeners: Serve takes its listener as given.
	ServerConfig
	Decider Decider
	Logger  *slog.Logger
	Conns   ConnObserver

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	base       context.Context // every request's ctx; Shutdown cancels it
	cancelBase context.CancelFunc
	warns      *warnLimiter
	orphans    orphans       // messages of evicted connections, by instance
	poller     *poller       // parks idle connections; nil: each waits in a goroutine
	grace      time.Duration // Shutdown's wait for cancelled decisions
	idleSeq    atomic.Uint64 // stamps connections as they turn idle
	shutdown   atomic.Bool
	active     sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("policy: server closed")

// Defaults for the Server's zero fields.
const (
	DefaultIdleTimeout  = 330 * time.Second
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxConns     = 1000
)

// shutdownGrace is how long Shutdown, out of time, waits for decisions it
// cancelled to reply before it closes their connections.
const shutdownGrace = 500 * time.Millisecond

// init fills the zero fields; s.mu is held.
func (s *Server) init() {
	if s.Limits == (Limits{}) {
		s.Limits = DefaultLimits
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = DefaultReadTimeout
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = DefaultWriteTimeout
	}
	if s.MaxConnections <= 0 {
		s.MaxConnections = DefaultMaxConns
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.base == nil {
		s.base, s.cancelBase = context.WithCancel(context.Background())
	}
	if s.grace <= 0 {
		s.grace = shutdownGrace
	}
	if s.warns == nil {
		s.warns = newWarnLimiter(warnInterval, time.Now)
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
}

// Serve accepts connections on ln until Shutdown; it always returns a
// non-nil error, ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.init()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	if s.poller == nil {
		s.poller = newPoller()
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer s.forgetListener(ln)

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			if !isTemporaryAccept(err) {
				return fmt.Errorf("policy: accept: %w", err)
			}
			if outOfDescriptors(err) && s.evictForDescriptor() {
				continue // a descriptor is free again: accept at once
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.warn(warnAccept, "accept failed, retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.accept(nc)
	}
}

func isTemporaryAccept(err error) bool {
	// EMFILE and friends are transient; a closed listener is not.
	return !errors.Is(err, net.ErrClosed)
}

// outOfDescriptors reports an accept that failed for want of a file
// descriptor, the process's (EMFILE) or the system's (ENFILE): accept(2).
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// evictForDescriptor closes the connection idle the longest, as at
// max_connections, when descriptors run out first (a LimitNOFILE below
// what max_connections needs): idle sockets held by any local process
// must not lock Postfix out then either. It reports whether it closed
// one; with every connection busy, accept waits for one to end.
func (s *Server) evictForDescriptor() bool {
	s.mu.Lock()
	evicted, idleFor := s.evictIdle()
	s.mu.Unlock()
	if evicted == nil {
		return false
	}
	if s.Conns != nil {
		s.Conns.ConnEvicted()
	}
	s.warn(warnEvictedFD, "closed the longest-idle connection: out of file descriptors",
		"remote", evicted.remote(), "idle", idleFor.Round(time.Millisecond), "connections", s.connCount())
	return true
}

// connCount is how many connections are open.
func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) forgetListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// accept applies the allow list and the connection cap, then serves.
func (s *Server) accept(nc net.Conn) {
	if !s.allowed(nc.RemoteAddr()) {
		s.refuse(nc, RefusedNotAllowed, warnNotAllowed,
			"refused connection from a client outside allowed_clients")
		return
	}
	// Postfix connects when it has a request and sends it at once; only
	// between requests may a connection wait as long as IdleTimeout.
	now := time.Now()
	c := &conn{srv: s, nc: nc, idle: true, first: true, deadline: now.Add(s.ReadTimeout)}
	c.markIdle(now)
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	var evicted *conn
	var idleFor time.Duration
	if len(s.conns) >= s.MaxConnections {
		if evicted, idleFor = s.evictIdle(); evicted == nil {
			s.mu.Unlock()
			s.refuse(nc, RefusedMaxConns, warnBusy,
				"refused connection: max_connections reached and every connection busy",
				"max_connections", s.MaxConnections)
			return
		}
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	if evicted != nil {
		s.evicted(evicted, idleFor)
	}
	if s.Conns != nil {
		s.Conns.ConnOpened()
	}
	if !c.park() {
		go c.serve()
	}
}

// evictIdle closes the connection idle the longest and forgets it, to
// make room for a new one; s.mu is held. It scans every connection, which
// happens only at the cap. A connection can turn busy between the scan
// and the close, so it tries again, at most once per connection. A
// request whose first bytes arrive just as its connection is closed is
// lost, and Postfix retries it once on a new connection (attr_clnt.c).
func (s *Server) evictIdle() (*conn, time.Duration) {
	for range len(s.conns) {
		var victim *conn
		var since time.Time
		var oldest uint64
		for c := range s.conns {
			if t, seq, idle := c.idleTime(); idle && (victim == nil || seq < oldest) {
				victim, since, oldest = c, t, seq
			}
		}
		if victim == nil {
			return nil, 0
		}
		if closed, msg := victim.closeIdle(); closed {
			delete(s.conns, victim)
			s.orphans.put(msg, time.Now())
			return victim, time.Since(since)
		}
	}
	return nil, 0
}

func (s *Server) evicted(c *conn, idleFor time.Duration) {
	if s.Conns != nil {
		s.Conns.ConnEvicted()
	}
	s.warn(warnEvicted, "closed the longest-idle connection: max_connections reached",
		"remote", c.remote(), "idle", idleFor.Round(time.Millisecond), "max_connections", s.MaxConnections)
}

func (s *Server) refuse(nc net.Conn, reason string, kind warnKind, msg string, args ...any) {
	if s.Conns != nil {
		s.Conns.ConnRefused(reason)
	}
	s.warn(kind, msg, append([]any{"remote", nc.RemoteAddr().String()}, args...)...)
	nc.Close()
}

// warn logs a warning that one connection can cause, at most once per
// kind and warnInterval: thousands of connections must not mean
// thousands of lines. A line after a quiet spell says how many were held
// back.
func (s *Server) warn(kind warnKind, msg string, args ...any) {
	ok, suppressed := s.warns.allow(kind)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.Logger.Warn(msg, args...)
}

func (s *Server) allowed(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return true // unix socket: the file mode decides
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	if len(s.AllowedClients) == 0 {
		return ip.IsLoopback()
	}
	for _, p := range s.AllowedClients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, closes idle connections, lets replies in flight
// finish and waits for their connections to end, or for ctx. Like
// net/http's, it returns ctx.Err() if ctx ends first: it then cancels the
// context of the decisions still running, so they fail open and reply,
// waits up to shutdownGrace for them, and closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.init()
	defer s.cancelBase()
	defer s.poller.close() // no connection parks once the idle ones are closed below
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cancelBase()
	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
	}
	return ctx.Err()
}
