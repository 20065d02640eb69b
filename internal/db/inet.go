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
	var b [64]byte
	return string(AppendInetText(b[:0], a))
}

// AppendInetText appends InetText(a) to b, for a caller that copies the
// text anyway (BulkStmt.TextBytes) and need not make a string of it.
func AppendInetText(b []byte, a netip.Addr) []byte {
	a = a.WithZone("")
	if a.Is6() && !a.Is4In6() {
		w := a.As16()
		if w == [16]byte{12: w[12], 13: w[13], 14: w[14], 15: w[15]} && (w[12] != 0 || w[13] != 0) {
			return netip.AddrFrom4([4]byte(w[12:])).AppendTo(append(b, "::"...))
		}
	}
	return a.AppendTo(b)
}
