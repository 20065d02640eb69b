// Package dnstest runs an authoritative DNS server in-process on
// 127.0.0.1, for tests of everything that resolves: DNS lists, SPF, and the
// end-to-end rig (mxpolicyd --dns points at it). Zones are written in Go as
// zone-file lines. Every answer has the AA bit set: without AA or RA, Go's
// resolver calls a NODATA answer a "lame referral" and go/spf turns that
// into PermError instead of None.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server answers from records held in memory. Records and behaviours can be
// changed while it runs. Safe for concurrent use.
type Server struct {
	addr   string
	udp    *dns.Server
	tcp    *dns.Server
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lowercased FQDN owner name
	rcodes  map[string]int
	delays  map[string]time.Duration
	gates   map[string]<-chan struct{}
	trunc   map[string]bool
	queries map[qkey]int
}

type qkey struct {
	name  string
	qtype uint16
}

// Start serves records (zone-file lines such as
// "2.0.0.127.zen.test. 300 IN A 127.0.0.2") on 127.0.0.1, UDP and TCP on
// one port.
func Start(records ...string) (*Server, error) {
	s := &Server{
		closed:  make(chan struct{}),
		rrs:     map[string][]dns.RR{},
		rcodes:  map[string]int{},
		delays:  map[string]time.Duration{},
		gates:   map[string]<-chan struct{}{},
		trunc:   map[string]bool{},
		queries: map[qkey]int{},
	}
	if err := s.Add(records...); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// New is Start for tests: it fails t on error and closes the server when
// the test ends.
func New(t testing.TB, records ...string) *Server {
	t.Helper()
	s, err := Start(records...)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Addr is the host:port to send queries to.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners and releases handlers that are sleeping.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return err
}

// listen binds UDP on an ephemeral port and TCP on the same port, retrying
// when another process holds the TCP side.
func (s *Server) listen() error {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("dnstest: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = pc.LocalAddr().String()
		s.udp = s.serve(&dns.Server{PacketConn: pc})
		s.tcp = s.serve(&dns.Server{Listener: ln})
		return nil
	}
	return fmt.Errorf("dnstest: no port free for UDP and TCP: %w", lastErr)
}

func (s *Server) serve(srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.Handler = dns.HandlerFunc(s.handle)
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	return srv
}

// Add parses zone-file lines and adds their records.
func (s *Server) Add(records ...string) error {
	rrs := make([]dns.RR, 0, len(records))
	for _, line := range records {
		rr, err := dns.NewRR(line)
		if err != nil {
			return fmt.Errorf("dnstest: %q: %w", line, err)
		}
		if rr == nil {
			return fmt.Errorf("dnstest: %q: no record", line)
		}
		rrs = append(rrs, rr)
	}
	s.AddRR(rrs...)
	return nil
}

// AddRR adds parsed records.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		n := canon(rr.Header().Name)
		s.rrs[n] = append(s.rrs[n], rr)
	}
}

// Remove deletes every record owned by name, so it answers NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rrs, canon(name))
}

// SetRcode makes every query for name answer rcode (dns.RcodeServerFailure,
// dns.RcodeRefused, ...); dns.RcodeSuccess restores normal answers.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, canon(name))
		return
	}
	s.rcodes[canon(name)] = rcode
}

// SetDelay makes answers for name wait d first: a slow authority, for
// deadline tests.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[canon(name)] = d
}

// SetGate makes answers for name wait until gate is closed: a test
// opens it when what it waits for has happened (both of two queries
// arrived), where a delay would be a guess about time.
func (s *Server) SetGate(name string, gate <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gates[canon(name)] = gate
}

// SetTruncate makes UDP answers for name empty with TC set, so clients
// must retry over TCP.
func (s *Server) SetTruncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trunc[canon(name)] = on
}

// Queries counts the queries received for name and qtype, over both
// transports: tests use it to prove an answer came from a cache.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[qkey{canon(name), qtype}]
}

func canon(name string) string { return strings.ToLower(dns.Fqdn(name)) }
