package db

import (
	"strings"
	"unicode/utf8"
)

// Storable reports whether PostgreSQL's text type holds every s: valid
// UTF-8, the databases' encoding (migrations), and no NUL, which text
// cannot hold (PostgreSQL docs, "Character Types"). A statement binding
// any other value fails, and with it the whole of a batched statement.
func Storable(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
	return true
}

// ToStorable returns s with each byte that is not part of valid UTF-8,
// and each NUL, replaced by U+FFFD, so that PostgreSQL's text holds it;
// one replacement per byte, as SQLite's readers show its raw bytes
// (strings.ToValidUTF8 would give one per run of bad bytes).
func ToStorable(s string) string {
	if Storable(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 || (r == utf8.RuneError && n == 1) {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
