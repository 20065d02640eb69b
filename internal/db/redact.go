package db

import (
	"net/url"
	"regexp"
	"strings"
)

const (
	redacted = "xxxxx"
	// unparseable stands for a key=value DSN that does not parse: where
	// its values end is unknown, and so is what to mask.
	unparseable = "<unparseable DSN>"
)

// secretKeys are the connection parameters that hold a credential:
// password and sslpassword (the passphrase of the client key), and since
// PostgreSQL 18 the OAuth client secret and the SCRAM keys (PostgreSQL
// docs, "Parameter Key Words").
var secretKeys = map[string]bool{
	"password": true, "sslpassword": true, "oauth_client_secret": true,
	"scram_client_key": true, "scram_server_key": true,
}

var (
	// anyScheme finds a scheme:// of any name (RFC 3986 §3.1), so that a
	// DSN with a misspelt or foreign scheme is masked too.
	anyScheme = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://`)
	// pgScheme finds a postgres URL's scheme with a slash or two missing
	// (KindOf refuses such a DSN, and its error may be quoted).
	pgScheme = regexp.MustCompile(`(?i)\bpostgres(?:ql)?:/?`)
	// queryKey finds a URL query parameter's name, which may be
	// percent-encoded (pass%77ord is password to pgx's url.Parse).
	queryKey = regexp.MustCompile(`[?&]([^=&?#\s]+)=`)
	// textKey finds a secret keyword of a key=value string quoted in a
	// message.
	textKey = regexp.MustCompile(`(?i)\b(?:(?:ssl)?password|oauth_client_secret|scram_(?:client|server)_key)\s*=\s*`)
)

// Redact returns s with every password replaced, for logs and error
// messages: a DSN printed by "config show" or a failed connect must never
// reveal the credential. s may be a DSN of any scheme, a key=value string
// or a message quoting either; names are matched case-insensitively.
// Where the extent of a password is unclear, more is masked, never less:
// a key=value DSN that does not parse is replaced whole.
func Redact(s string) string {
	s = strings.TrimSpace(s)
	if isKeyValueDSN(s) {
		return redactKV(s)
	}
	return maskTextKeys(maskQuery(maskUserinfo(s)))
}

// redactKV masks the secret values of a libpq key=value DSN, read as libpq
// reads it, so that a quote, an escaped space or a "://" inside a value
// cannot hide one.
func redactKV(s string) string {
	pairs, err := parseKV(s)
	if err != nil {
		return unparseable
	}
	var b strings.Builder
	last := 0
	for _, p := range pairs {
		if secretKeys[strings.ToLower(p.key)] {
			b.WriteString(s[last:p.start])
			b.WriteString(redacted)
			last = p.end
		}
	}
	b.WriteString(s[last:])
	return b.String()
}

// maskUserinfo masks the password of the first scheme://user:password@
// in s. The userinfo ends at the last '@' of s: the host after it has
// none (RFC 3986 §3.2.2), while an unescaped '@', '/', '?', '#' or space
// may be in a password or a user name as written. A later '@' in the
// text over-masks rather than leaks.
func maskUserinfo(s string) string {
	loc := anyScheme.FindStringIndex(s)
	if loc == nil {
		loc = pgScheme.FindStringIndex(s)
	}
	if loc == nil {
		return s
	}
	rest := s[loc[1]:]
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 {
		return s // a user name alone
	}
	return s[:loc[1]+colon+1] + redacted + rest[at:]
}

// maskQuery masks the value of every secret URL query parameter, up to
// the next '&' or the end of s.
func maskQuery(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range queryKey.FindAllStringSubmatchIndex(s, -1) {
		if m[0] < last || !secretKeys[queryName(s[m[2]:m[3]])] {
			continue
		}
		end := len(s)
		if i := strings.IndexByte(s[m[1]:], '&'); i >= 0 {
			end = m[1] + i
		}
		b.WriteString(s[last:m[1]])
		b.WriteString(redacted)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// queryName is a query parameter's name as pgx reads it: unescaped.
func queryName(k string) string {
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	return strings.ToLower(k)
}

// maskTextKeys masks "password=value" quoted in a message, the value read
// as libpq reads it; an unterminated quote masks the rest. A URL query
// parameter ("?password=", "&password=") is maskQuery's.
func maskTextKeys(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range textKey.FindAllStringIndex(s, -1) {
		if m[0] < last || m[0] > 0 && (s[m[0]-1] == '?' || s[m[0]-1] == '&') {
			continue
		}
		end, _ := kvValue(s, m[1])
		b.WriteString(s[last:m[1]])
		b.WriteString(redacted)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}
