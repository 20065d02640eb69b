package db

import (
	"regexp"
	"strings"
)

const redacted = "xxxxx"

var (
	// urlUserinfo matches the "user:password@" of any scheme://, so that a
	// DSN with a misspelt or foreign scheme is masked too (RFC 3986 §3.2.1
	// deprecates passwords in userinfo for this very reason). The password
	// runs to the last '@' before white space: an unescaped '@' inside it then
	// over-masks rather than leaks.
	urlUserinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://[^:@/?#\s]*):\S*@`)
	// urlPassword matches a password= or sslpassword= (the passphrase of
	// the client key) query parameter of a URL.
	urlPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#\s]*`)
	// kvPassword matches password= or sslpassword= in a libpq key=value DSN, where the
	// value is a bare word or a single-quoted string with \' escapes
	// (libpq "Connection Strings", §34.1.1.1).
	kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)
)

// Redact returns s with every password replaced, for logs and error
// messages: a DSN printed by "config show" or a failed connect must never
// reveal the credential. s may be a DSN of any scheme, a key=value string
// or a message quoting either; names are matched case-insensitively.
func Redact(s string) string {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		s = urlUserinfo.ReplaceAllString(s, "${1}:"+redacted+"@")
		return urlPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	return kvPassword.ReplaceAllString(s, "${1}"+redacted)
}
