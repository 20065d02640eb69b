package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// conn is one Postfix smtpd process's persistent policy connection.
// Between requests it is parked (Server.poller): no goroutine serves it
// until its next request begins, its deadline passes or the server closes
// it, and then a new one does (resume). Where there is no poller, its
// goroutine waits in Read instead.
type conn struct {
	srv *Server
	nc  net.Conn

	mu        sync.Mutex
	idle      bool      // waiting for a request: Shutdown or eviction may close it
	closed    bool      // closed by closeIfIdle
	parked    bool      // idle with no goroutine: in srv.poller, timer armed
	idleSince time.Time // when it last became idle
	idleSeq   uint64    // orders idleSince strictly (Server.idleSeq)
	deadline  time.Time // when the wait for the next request ends
	timer     *time.Timer
	pollID    uint64 // its key in srv.poller; 0 until first parked

	// Kept by the goroutine serving the connection, and across parking.
	first   bool      // no request yet
	msg     *Message  // the message the last request belonged to
	writeBy time.Time // the write deadline set on nc (reply)
	readBy  time.Time // the read deadline set on nc (setReadDeadline)

	// An idle connection holds only in: the first byte of its next
	// request is read into it, and only then does the connection take a
	// reader from readers, which src feeds that byte and then the socket.
	in  [1]byte
	src firstByte
}

// closeIfIdle closes the connection unless a request is in flight, and
// reports whether it did. A parked connection gets a goroutine again,
// which finds the socket closed and ends the connection.
func (c *conn) closeIfIdle() bool {
	closed, _ := c.closeIdle()
	return closed
}

// closeIdle is closeIfIdle that also returns, when it closed the
// connection, the message its last request belonged to. The goroutine
// that serves the connection wrote it before it turned idle, and a
// request it reads from now on is not decided (handle).
func (c *conn) closeIdle() (bool, *Message) {
	c.mu.Lock()
	idle := c.idle
	var msg *Message
	if idle {
		c.nc.Close()
		c.closed = true
		msg = c.msg
	}
	c.mu.Unlock()
	if idle {
		c.resume(false)
	}
	return idle, msg
}

// isClosed reports whether closeIfIdle closed the connection.
func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) idleTime() (since time.Time, seq uint64, idle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleSince, c.idleSeq, c.idle
}

// markIdle stamps now as the moment the connection became idle; c.mu
// is held or c is not yet shared.
func (c *conn) markIdle(now time.Time) {
	c.idleSince, c.idleSeq = now, c.srv.idleSeq.Add(1)
}

// waitNext marks the connection idle for at most wait from now; it
// reports false when the server is shutting down and the connection
// should end instead of idling.
func (c *conn) waitNext(wait time.Duration, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle, c.deadline = true, now.Add(wait)
	return !c.srv.shutdown.Load()
}

// setBusy marks a request in flight: Shutdown lets it finish.
func (c *conn) setBusy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = false
}

// stampReply stamps the connection's idle time as its reply goes out,
// before the write: the client may send its next request, or another
// connection may open, as soon as the reply arrives, and eviction must
// order connections by when they fell quiet as the clients saw it, not by
// when this goroutine got to run again.
func (c *conn) stampReply(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.markIdle(now)
}

// park hands the idle connection to the poller until c.deadline, and
// reports whether it did; the calling goroutine must then let go of c.
func (c *conn) park() bool {
	p := c.srv.poller
	if p == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !p.add(c) {
		return false
	}
	c.parked = true
	if c.timer == nil {
		c.timer = time.AfterFunc(time.Until(c.deadline), c.expire)
	} else {
		c.timer.Reset(time.Until(c.deadline))
	}
	return true
}

// expire resumes the connection when its deadline has passed; next then
// reports the timeout. A timer that fired as the connection woke finds it
// parked again, with a later deadline, and leaves it.
func (c *conn) expire() { c.resume(true) }

// resume takes c from the poller, if it is parked, and serves it in a new
// goroutine.
func (c *conn) resume(timedOut bool) {
	c.mu.Lock()
	ok := c.parked && !(timedOut && time.Now().Before(c.deadline))
	if ok {
		c.parked = false
		c.timer.Stop()
		c.srv.poller.forget(c)
	}
	c.mu.Unlock()
	if ok {
		go c.serve()
	}
}

// serve serves requests until the connection ends or is parked.
func (c *conn) serve() {
	if !c.handle() {
		c.end()
	}
}

// handle reads requests and answers them until the connection waits for
// its next request parked, and reports whether it is; false: it is to end.
func (c *conn) handle() (parked bool) {
	defer c.recoverPanic()
	s := c.srv
	var br *bufio.Reader // held while a request is read or awaited busy (requestWithin), or input is left over
	defer func() { putReader(br) }()
	for {
		var req *Request
		var err error
		req, br, err = c.next(br)
		if err != nil {
			c.logReadError(err, c.first)
			return false
		}
		if c.isClosed() {
			// Closed for another connection while this request came
			// in: its message went to s.orphans, and Postfix sends the
			// request again on a new connection.
			return false
		}
		if c.msg == nil || req.Instance == "" || req.Instance != c.msg.Instance {
			// The message of an evicted connection, or a new one. A
			// clone: the request's values share one string
			// (ReadRequest), which the message would keep alive.
			c.msg = s.orphans.take(req.Instance, time.Now(), s.IdleTimeout)
			if c.msg == nil {
				c.msg = NewMessage(strings.Clone(req.Instance))
			}
		}
		if br.Buffered() == 0 {
			// Postfix waits for each reply before it sends more, so
			// nothing is left over; a client that pipelines keeps its
			// reader and the bytes in it.
			putReader(br)
			br = nil
		}
		a := s.Decider.Decide(s.base, req, c.msg)
		// One reading of the clock for the reply and the wait after it:
		// the write takes microseconds, the deadlines are milliseconds
		// and more.
		now := time.Now()
		c.stampReply(now)
		if !c.reply(a, now) {
			return false
		}
		c.first = false
		if !c.waitNext(s.IdleTimeout, now) {
			return false // shutting down: the reply is out, close now
		}
		if br == nil {
			var begun bool
			if br, begun = c.requestWithin(parkAfter, now); !begun && c.park() {
				return true
			}
		}
	}
}

// parkAfter is how long a connection just answered waits for its next
// request in its own goroutine before it is parked (at least half of
// it: requestWithin). Postfix sends the
// next request of a message (RCPT, DATA, END-OF-MESSAGE) as soon as its
// SMTP client sends the command, often within milliseconds, and the
// goroutine's stack has grown to what a request needs, where a new
// goroutine would grow its own again (runtime.copystack).
const parkAfter = 50 * time.Millisecond

// requestWithin waits up to d from now (at least d/2) for the next
// request to begin, in this goroutine, and reports false if none did;
// true also when the wait ended otherwise (closed, c.deadline passed),
// which next then reports. What arrived is read into a pooled reader,
// which it returns for next to parse: a busy connection reads each
// request with one read, and holds a buffer only while it is busy. As
// with the write deadline (writeDeadline), a busy connection keeps the
// read deadline it has while at least d/2 of it is left, instead of
// moving a runtime timer for every request.
func (c *conn) requestWithin(d time.Duration, now time.Time) (*bufio.Reader, bool) {
	until := now.Add(d)
	if c.srv.poller == nil || !until.Before(c.deadline) {
		return nil, true // next waits in this goroutine until c.deadline
	}
	if left := c.readBy.Sub(now); left < d/2 || left > d {
		c.setReadDeadline(until)
	}
	br := getReader(c.nc, c.srv.Limits.MaxLine)
	if _, err := br.Peek(1); errors.Is(err, os.ErrDeadlineExceeded) {
		putReader(br)
		return nil, false
	}
	return br, true
}

func (c *conn) recoverPanic() {
	if p := recover(); p != nil {
		c.srv.Logger.Error("panic serving connection", "panic", p, "stack", string(debug.Stack()))
	}
}

// end releases the connection when serve returns, whatever the reason.
func (c *conn) end() {
	s := c.srv
	c.nc.Close()
	s.mu.Lock()
	delete(s.conns, c) // already gone if evicted
	s.mu.Unlock()
	if s.Conns != nil {
		s.Conns.ConnClosed()
	}
	s.active.Done()
}

// next waits until c.deadline for a request to begin, then up to
// ReadTimeout for the rest of it. br is the reader still holding input of
// an earlier request, or nil; next returns the reader the request was read
// with.
func (c *conn) next(br *bufio.Reader) (*Request, *bufio.Reader, error) {
	s := c.srv
	if br == nil || br.Buffered() == 0 {
		c.setReadDeadline(c.deadline)
	}
	if br == nil {
		if !c.src.pending {
			if err := c.waitFirst(); err != nil {
				return nil, nil, err
			}
		}
		br = getReader(&c.src, s.Limits.MaxLine)
	} else if _, err := br.Peek(1); err != nil {
		return nil, br, err
	}
	c.setBusy()
	if !holdsRequest(br) {
		c.setReadDeadline(time.Now().Add(s.ReadTimeout))
	}
	req, err := ReadRequest(br, s.Limits)
	return req, br, err
}

// setReadDeadline sets nc's read deadline and remembers it.
func (c *conn) setReadDeadline(t time.Time) {
	c.readBy = t
	c.nc.SetReadDeadline(t)
}

// holdsRequest reports whether br's buffer holds a whole request, so
// ReadRequest reads nothing more and needs no read deadline: the common
// case of a busy connection, whose request came in one read
// (requestWithin). A deadline is a runtime timer to move, per request.
// The test is the buffer's end, not a search through it: text after
// stray empty lines that ends with the empty line closing a request.
// A buffer that ends elsewhere (a request in two reads, a second one
// begun) is read with a deadline.
func holdsRequest(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	b = bytes.TrimLeft(b, "\r\n") // stray empty lines before it, LF or CRLF (ReadRequest, readLine)
	return len(b) > 0 && bytes.HasSuffix(b, []byte("\n\n"))
}

// waitFirst reads the first byte of the next request into c.in and sets
// c.src to read it back before the rest.
func (c *conn) waitFirst() error {
	for {
		n, err := c.nc.Read(c.in[:])
		if n == 1 {
			c.src = firstByte{b: c.in[0], pending: true, r: c.nc}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// firstByte is a reader that returns b, then what r reads: the byte an
// idle connection waited for, in front of the rest of the request.
type firstByte struct {
	b       byte
	pending bool
	r       io.Reader
}

func (f *firstByte) Read(p []byte) (int, error) {
	if !f.pending || len(p) == 0 {
		return f.r.Read(p)
	}
	p[0], f.pending = f.b, false
	return 1, nil
}

// readers holds the request readers of connections between requests, so
// that idle connections, most of them, hold no buffer (sync.Pool).
var readers sync.Pool

// getReader returns a pooled reader on src whose buffer is larger than a
// line may be, so that ReadSlice reports an over-long line as
// ErrBufferFull instead of growing without bound (ReadRequest).
func getReader(src io.Reader, maxLine int) *bufio.Reader {
	size := maxLine + 64
	if br, ok := readers.Get().(*bufio.Reader); ok && br.Size() == size {
		br.Reset(src)
		return br
	}
	return bufio.NewReaderSize(src, size)
}

// putReader returns br to the pool, dropping its source so the pool keeps
// no connection alive.
func putReader(br *bufio.Reader) {
	if br == nil {
		return
	}
	br.Reset(nil)
	readers.Put(br)
}

func (c *conn) reply(a Action, now time.Time) bool {
	bp := replies.Get().(*[]byte)
	defer replies.Put(bp)
	*bp = a.AppendWire((*bp)[:0])
	c.writeDeadline(now)
	if _, err := c.nc.Write(*bp); err != nil {
		c.srv.warn(warnWrite, "writing reply failed", "remote", c.remote(), "err", err)
		return false
	}
	return true
}

// writeDeadline makes sure a write on nc ends within WriteTimeout and
// lasts at least half of it: the deadline is moved only once half of it
// has passed, not for every reply (a runtime timer to move each time).
func (c *conn) writeDeadline(now time.Time) {
	t := c.srv.WriteTimeout
	if c.writeBy.Sub(now) < t/2 {
		c.writeBy = now.Add(t)
		c.nc.SetWriteDeadline(c.writeBy)
	}
}

// replies holds buffers to render replies in, shared by all connections
// so that an idle one holds none (sync.Pool).
var replies = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

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
