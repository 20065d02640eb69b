package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Decider answers one request; *Engine is the real one. msg is the state of
// the message the request belongs to (Postfix's instance attribute).
type Decider interface {
	Decide(ctx context.Context, req *Request, msg *Message) Action
}

// ConnObserver is told when connections open and close (the open
// connections gauge). Optional.
type ConnObserver interface {
	ConnOpened()
	ConnClosed()
}

// Server serves the policy protocol on any number of listeners. Its zero
// value is not usable: set Decider. It is shaped like net/http.Server:
// Serve blocks, Shutdown drains.
type Server struct {
	Decider Decider
	Limits  Limits
	// IdleTimeout bounds the wait for the next request. Postfix closes an
	// idle policy connection itself after smtpd_policy_service_max_idle
	// (300 s); if we closed first, Postfix would find the socket readable
	// (EOF), sleep retry_delay (1 s) and reconnect (attr_clnt.c), so the
	// default is longer.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading the rest of a request once its first
	// byte arrived: Postfix writes a request at once, so a client that
	// stalls mid-request is broken or hostile.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply.
	WriteTimeout time.Duration
	// MaxConns caps concurrent connections; one over it is closed at once
	// so Postfix applies its default_action without waiting.
	MaxConns int
	// Allowed lists the client networks allowed on TCP listeners; empty
	// allows loopback only. Unix sockets are guarded by their file mode.
	Allowed []netip.Prefix
	Logger  *slog.Logger
	Conns   ConnObserver

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	active    sync.WaitGroup
	nconns    atomic.Int64
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

func (s *Server) setDefaults() {
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
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
}

// Serve accepts connections on ln until Shutdown; it always returns a
// non-nil error, ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.setDefaults()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
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
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Logger.Warn("accept failed, retrying", "err", err, "backoff", backoff)
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

func (s *Server) forgetListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// accept applies the allow list and the connection cap, then serves.
func (s *Server) accept(nc net.Conn) {
	if !s.allowed(nc.RemoteAddr()) {
		s.Logger.Warn("refused connection from a client outside allowed_clients",
			"remote", nc.RemoteAddr().String())
		nc.Close()
		return
	}
	if s.nconns.Add(1) > int64(s.MaxConns) {
		s.nconns.Add(-1)
		s.Logger.Warn("refused connection: max_connections reached",
			"remote", nc.RemoteAddr().String(), "max_connections", s.MaxConns)
		nc.Close()
		return
	}
	c := &conn{srv: s, nc: nc, idle: true}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	if s.Conns != nil {
		s.Conns.ConnOpened()
	}
	go c.serve()
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
	if len(s.Allowed) == 0 {
		return ip.IsLoopback()
	}
	for _, p := range s.Allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, closes idle connections, lets replies in flight
// finish and waits for their connections to end, or for ctx. Like
// net/http's, it returns ctx.Err() if ctx ends first, after closing the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
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
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// conn is one Postfix smtpd process's persistent policy connection.
type conn struct {
	srv *Server
	nc  net.Conn

	mu   sync.Mutex
	idle bool // waiting for a request: Shutdown may close it
}

func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.nc.Close()
	}
}

// setIdle marks the connection idle or busy; it reports false when the
// server is shutting down and the connection should end instead of idling.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = idle
	return !(idle && c.srv.shutdown.Load())
}

func (c *conn) serve() {
	s := c.srv
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error("panic serving connection", "panic", p, "stack", string(debug.Stack()))
		}
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.nconns.Add(-1)
		if s.Conns != nil {
			s.Conns.ConnClosed()
		}
		s.active.Done()
	}()
	// The buffer is larger than a line may be, so that ReadSlice reports
	// an over-long line as ErrBufferFull instead of growing without bound.
	br := bufio.NewReaderSize(c.nc, s.Limits.MaxLine+64)
	var msg *Message
	for {
		req, err := c.next(br)
		if err != nil {
			c.logReadError(err)
			return
		}
		if msg == nil || req.Instance == "" || req.Instance != msg.Instance {
			msg = NewMessage(req.Instance)
		}
		if !c.reply(s.Decider.Decide(context.Background(), req, msg)) {
			return
		}
		if !c.setIdle(true) {
			return // shutting down: the reply is out, close now
		}
	}
}

// next waits up to IdleTimeout for a request to begin, then up to
// ReadTimeout for the rest of it.
func (c *conn) next(br *bufio.Reader) (*Request, error) {
	s := c.srv
	c.nc.SetReadDeadline(time.Now().Add(s.IdleTimeout))
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	c.setIdle(false) // a request is in flight: Shutdown lets it finish
	c.nc.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	return ReadRequest(br, s.Limits)
}

func (c *conn) reply(a Action) bool {
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.WriteTimeout))
	if _, err := c.nc.Write(a.Wire()); err != nil {
		c.srv.Logger.Warn("writing reply failed", "remote", c.remote(), "err", err)
		return false
	}
	return true
}

// logReadError logs why a connection ends. EOF between requests and our
// own shutdown are normal; anything else is a warning, and per
// SMTPD_POLICY_README the connection is closed without a reply.
func (c *conn) logReadError(err error) {
	switch {
	case errors.Is(err, io.EOF):
		c.srv.Logger.Debug("connection closed by client", "remote", c.remote())
	case c.srv.shutdown.Load() && errors.Is(err, net.ErrClosed):
		c.srv.Logger.Debug("idle connection closed for shutdown", "remote", c.remote())
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.srv.Logger.Info("closing connection: read timed out", "remote", c.remote())
	default:
		c.srv.Logger.Warn("closing connection without reply: bad request",
			"remote", c.remote(), "err", err)
	}
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

// Listen opens a listener: "unix:/path" for a unix socket created with
// mode (a stale socket file left by a crash is replaced; any other file
// is not), anything else a TCP host:port.
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("policy: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("policy: listen %s: file exists and is not a socket", addr)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("policy: listen %s: %w", addr, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("policy: chmod %s: %w", path, err)
	}
	return ln, nil
}
