package db

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// urlScheme is the scheme of a URL (RFC 3986 §3.1: a letter, then letters,
// digits, '+', '-' or '.'); schemes are case-insensitive.
var urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]*)://`)

// KindOf says which store dsn names: Postgres for a postgres:// or
// postgresql:// URL (any letter case) or a libpq key=value string
// ("host=... dbname=..."), SQLite for a file path or a file: name. Any
// other scheme:// is an error, never a file name: "mysql://u:pw@h/db"
// taken as a path would create a directory named after the password. The
// error names the scheme only.
func KindOf(dsn string) (string, error) {
	s := strings.TrimSpace(dsn)
	if s == "" {
		return "", errors.New("db: empty database DSN or SQLite path")
	}
	if m := urlScheme.FindStringSubmatch(s); m != nil {
		switch strings.ToLower(m[1]) {
		case "postgres", "postgresql":
			return Postgres, nil
		case "file":
			return SQLite, nil
		}
		return "", fmt.Errorf("db: unsupported database scheme %q: use postgres:// or postgresql:// "+
			"for PostgreSQL, or a file path for SQLite", m[1]+"://")
	}
	// libpq key=value form: a file name never has "word=" as its first field
	// in practice, and requiring a known keyword keeps "a=b.db" a file.
	first, _, _ := strings.Cut(s, " ")
	if k, _, ok := strings.Cut(first, "="); ok && pgKeywords[strings.ToLower(k)] {
		return Postgres, nil
	}
	return SQLite, nil
}

// IsPostgresDSN reports whether dsn names a PostgreSQL server rather than
// a SQLite file.
func IsPostgresDSN(dsn string) bool {
	k, err := KindOf(dsn)
	return err == nil && k == Postgres
}

// pgKeywords are the libpq connection parameters that start a key=value
// DSN (libpq "Parameter Key Words", §34.1.2).
var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true,
	"password": true, "sslmode": true, "service": true, "connect_timeout": true,
	"application_name": true, "options": true, "passfile": true,
}

// SQLitePath is the file a SQLite DSN names: without a file: or file://
// prefix.
func SQLitePath(dsn string) string {
	s := strings.TrimSpace(dsn)
	if m := urlScheme.FindString(s); m != "" {
		return s[len(m):]
	}
	return strings.TrimPrefix(s, "file:")
}
