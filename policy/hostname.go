package policy

import (
	"strings"
	"unicode"
)

// HeaderHost reports whether s may name this host in the header fields
// mxpolicyd writes (Received-SPF's receiver, X-Greylist): printable, no
// white space, and none of the characters that end a token or open a
// comment or a quoted string there, ';', '(', ')' and '"' (RFC 7208
// §9.1, RFC 5322 §3.2). The empty name is left to the caller's default.
func HeaderHost(s string) bool {
	if strings.ContainsAny(s, ";()\"") {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
