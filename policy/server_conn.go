package policy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"
)

// conn is one Postfix smtpd process's persistent policy connection.
type conn struct {
	srv *Server
	nc  net.Conn

	mu        sync.Mutex
	idle      bool      // waiting for a request: Shutdown or eviction may close it
	idleSince time.Time // when it last became idle
	idleSeq   uint64    // orders idleSince strictly (Server.idleSeq)
}

// closeIfIdle closes the connection unless a request is in flight, and
// reports whether it did.
func (c *conn) closeIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.nc.Close()
	}
	return c.idle
}

func (c *conn) idleTime() (since time.Time, seq uint64, idle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleSince, c.idleSeq, c.idle
}

// markIdle stamps the moment the connection became idle; c.mu is held or
// c is not yet shared.
func (c *conn) markIdle() {
	c.idleSince, c.idleSeq = time.Now(), c.srv.idleSeq.Add(1)
}

// setIdle marks the connection idle or busy; it reports false when the
// server is shutting down and the connection should end instead of idling.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = idle
	if idle {
		c.markIdle()
	}
	return !(idle && c.srv.shutdown.Load())
}

func (c *conn) serve() {
	s := c.srv
	defer c.end()
	// The buffer is larger than a line may be, so that ReadSlice reports
	// an over-long line as ErrBufferFull instead of growing without bound.
	br := bufio.NewReaderSize(c.nc, s.Limits.MaxLine+64)
	var msg *Message
	// Postfix connects when it has a request and sends it at once; only
	// between requests may a connection wait as long as IdleTimeout.
	first, wait := true, s.ReadTimeout
	for {
		req, err := c.next(br, wait)
		if err != nil {
			c.logReadError(err, first)
			return
		}
		if msg == nil || req.Instance == "" || req.Instance != msg.Instance {
			msg = NewMessage(req.Instance)
		}
		if !c.reply(s.Decider.Decide(s.base, req, msg)) {
			return
		}
		if !c.setIdle(true) {
			return // shutting down: the reply is out, close now
		}
		first, wait = false, s.IdleTimeout
	}
}

// end releases the connection when serve returns, whatever the reason.
func (c *conn) end() {
	s := c.srv
	if p := recover(); p != nil {
		s.Logger.Error("panic serving connection", "panic", p, "stack", string(debug.Stack()))
	}
	c.nc.Close()
	s.mu.Lock()
	delete(s.conns, c) // already gone if evicted
	s.mu.Unlock()
	if s.Conns != nil {
		s.Conns.ConnClosed()
	}
	s.active.Done()
}

// next waits up to wait for a request to begin, then up to ReadTimeout
// for the rest of it.
func (c *conn) next(br *bufio.Reader, wait time.Duration) (*Request, error) {
	s := c.srv
	c.nc.SetReadDeadline(time.Now().Add(wait))
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
// own closing (shutdown, eviction) are normal; anything else is a
// warning, and per SMTPD_POLICY_README the connection is closed without a
// reply. first says the connection had yet to send a request.
func (c *conn) logReadError(err error, first bool) {
	s := c.srv
	_, _, silent := c.idleTime() // no byte of a request arrived
	switch {
	case errors.Is(err, io.EOF):
		s.Logger.Debug("connection closed by client", "remote", c.remote())
	case errors.Is(err, net.ErrClosed):
		s.Logger.Debug("connection closed by the server", "remote", c.remote())
	case first && silent && errors.Is(err, os.ErrDeadlineExceeded):
		s.warn(warnSilent, "closing connection: no request within read_timeout",
			"remote", c.remote(), "read_timeout", s.ReadTimeout)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Logger.Info("closing connection: read timed out", "remote", c.remote())
	default:
		s.warn(warnBadRequest, "closing connection without reply: bad request",
			"remote", c.remote(), "err", err)
	}
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}
