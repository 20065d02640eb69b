package dnstest

import (
	"net"
	"testing"
)

// ClosedAddr returns a host:port where nothing listens: a UDP query there
// is refused at once (ICMP port unreachable), as when the local resolver
// is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// ListenPort binds UDP and TCP on one loopback port, as a DNS server
// serves both (RFC 7766 §5): for a test server that answers one way over
// UDP and another over TCP. A port free for UDP may be taken for TCP, so
// it tries a few.
func ListenPort(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return nil, nil
}
