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
