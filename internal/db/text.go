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
