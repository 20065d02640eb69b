package policy

import (
	"os"
	"sync"
	"syscall"
)

// poller waits for the next request of every parked connection at once,
// so that an idle connection holds no goroutine: a goroutine blocked in
// Read keeps a stack of at least 2 KiB (runtime/stack.go, fixedStack),
// which the collector also counts towards the heap goal (runtime/mgcpacer.go),
// and with thousands of connections open that was most of the daemon's
// memory. It is an epoll instance (epoll(7)) that the Go runtime's own
// poller watches like any other descriptor: an epoll descriptor is itself
// pollable (epoll(7), "Questions and answers", Q3). Each socket is
// registered EPOLLONESHOT, so one event hands it back to one goroutine,
// and registering it again rearms it.
type poller struct {
	f  *os.File // the epoll descriptor, non-blocking, in the runtime's poller
	ep int      // its number (f.Fd would make it blocking)

	mu     sync.Mutex
	conns  map[uint64]*conn // parked, by conn.pollID
	lastID uint64
	closed bool
}

// newPoller returns a running poller, or nil if the system refuses one;
// connections then wait for requests in a goroutine each, as they can.
func newPoller() *poller {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil
	}
	p := &poller{f: os.NewFile(uintptr(fd), "policy-poller"), ep: fd, conns: map[uint64]*conn{}}
	go p.run()
	return p
}

// add registers c's socket until it has input (or hangs up); c.mu is
// held. It reports false when c is no socket or p is closed.
func (p *poller) add(c *conn) bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock() // held across the system call, so close cannot free p.f's number under it
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	op := syscall.EPOLL_CTL_MOD // registered before, disarmed by its event
	if c.pollID == 0 {
		p.lastID++
		c.pollID, op = p.lastID, syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(p.ep, op, int(fd), &ev)
	})
	if err != nil || cerr != nil {
		return false
	}
	p.conns[c.pollID] = c
	return true
}

// forget drops c, woken or closed. Its socket may stay registered,
// disarmed or about to close, which takes it out of the epoll set; an
// event that still comes for it finds no connection.
func (p *poller) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c.pollID)
	p.mu.Unlock()
}

func (p *poller) lookup(id uint64) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[id]
}

// run resumes the connections whose sockets have input, until close.
func (p *poller) run() {
	defer p.abandon()
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	events := make([]syscall.EpollEvent, 128)
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr == syscall.EINTR {
				n, werr = 0, nil
			}
			// No events yet: wait for the runtime's poller to
			// report the epoll descriptor readable.
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			return // closed (EBADF, EINVAL: never on a live epoll descriptor)
		}
		for _, ev := range events[:n] {
			if c := p.lookup(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32); c != nil {
				c.resume(false)
			}
		}
	}
}

// abandon ends the poller when its loop stops: after close, or if the
// epoll descriptor ever fails. No connection may then wait in it for an
// event that will not come, since Postfix would wait for the reply to a
// request nobody reads: add fails from then on, and every connection
// still parked is resumed, to wait for its next request in a goroutine of
// its own, as where there is no poller.
func (p *poller) abandon() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.f.Close()
	}
	parked := make([]*conn, 0, len(p.conns))
	for _, c := range p.conns {
		parked = append(parked, c)
	}
	p.mu.Unlock()
	for _, c := range parked {
		c.resume(false)
	}
}

// close stops the poller, if there is one; add fails from then on.
func (p *poller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.f.Close()
	}
}
