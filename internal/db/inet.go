package db

import "net/netip"

// InetText is a's text as PostgreSQL prints an inet host (host()), for
// the SQLite store to keep, so both stores report one address alike. Go
// and PostgreSQL differ only for an IPv4-compatible address (::/96, RFC
// 4291 section 2.5.5.1, deprecated) whose seventh 16-bit word is not
// zero: PostgreSQL prints its low 32 bits dotted, "::192.0.2.1"
// (inet_net_ntop_ipv6, src/port/inet_net_ntop.c), Go in hex words,
// "::c000:201". An IPv4-mapped address is dotted in both. The zone is
// dropped: inet has none.
func InetText(a netip.Addr) string {
	a = a.WithZone("")
	if a.Is6() && !a.Is4In6() {
		b := a.As16()
		if b == [16]byte{12: b[12], 13: b[13], 14: b[14], 15: b[15]} && (b[12] != 0 || b[13] != 0) {
			return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
		}
	}
	return a.String()
}
