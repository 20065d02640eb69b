package db

import (
	"net/url"
	"regexp"
	"strings"
)

const redacted = "xxxxx"

// kvPassword matches password=value in a libpq key=value DSN, where the
// value is a bare word or a single-quoted string with \' escapes.
var kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// Redact returns dsn with any password replaced, for logs and error
// messages: a DSN printed by "config show" or a failed connect must never
// reveal the credential (COMMON.md: never log secrets).
func Redact(dsn string) string {
	s := strings.TrimSpace(dsn)
	if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		return kvPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	u, err := url.Parse(s)
	if err != nil {
		// Unparseable URL: say nothing about it rather than risk the secret.
		return "postgres://" + redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", redacted)
		u.RawQuery = q.Encode()
	}
	return u.String()
}
