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
//
// So is a would-be path holding "password=" or "://" that is neither: a
// key=value string starting with a keyword we do not know, say. Its
// error does not quote it.
func KindOf(dsn string) (string, error) {
	s := strings.TrimSpace(dsn)
	if s == "" {
		return "", errors.New("db: empty database DSN or SQLite path")
	}
	if m := urlScheme.FindStringSubmatch(s); m != nil {
		return kindOfURL(s, m[1])
	}
	if pgNoSlashes.MatchString(s) {
		return "", errors.New("db: a PostgreSQL URL starts with postgres:// or postgresql://, two slashes")
	}
	if isKeyValueDSN(s) {
		return Postgres, nil
	}
	if strings.Contains(s, "://") || passwordKey.MatchString(s) {
		return "", errors.New(`db: the database is neither a PostgreSQL DSN nor a SQLite path: it holds "://" ` +
			`or "password=", but is no postgres:// URL and does not start with a libpq keyword (host=, dbname=, ...)`)
	}
	return SQLite, nil
}

// pgNoSlashes is a PostgreSQL URL with a slash missing ("postgres:/u:pw@h"
// or "postgresql:u:pw@h"): taken as a path it would create a directory
// named after the password.
var pgNoSlashes = regexp.MustCompile(`(?i)^postgres(?:ql)?:`)

// passwordKey finds password= or sslpassword=, with libpq's optional white
// space before '='.
var passwordKey = regexp.MustCompile(`(?i)password\s*=`)

// kindOfURL is KindOf for a string starting with scheme://.
func kindOfURL(s, scheme string) (string, error) {
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return Postgres, nil
	case "file":
		// A file URI names a local file: "file:///path", an empty
		// authority (RFC 8089 §2). Anything before the path would end up
		// in the file name, a "user:password@" included.
		if !strings.HasPrefix(s[len("file://"):], "/") {
			return "", errors.New("db: a file:// SQLite name must be file:///path (no host, no user)")
		}
		return SQLite, nil
	}
	return "", fmt.Errorf("db: unsupported database scheme %q: use postgres:// or postgresql:// "+
		"for PostgreSQL, or a file path for SQLite", scheme+"://")
}

// IsPostgresDSN reports whether dsn names a PostgreSQL server rather than
// a SQLite file.
func IsPostgresDSN(dsn string) bool {
	k, err := KindOf(dsn)
	return err == nil && k == Postgres
}

// isKeyValueDSN reports whether s starts as a libpq key=value string does,
// with a keyword libpq or pgx knows. A file name never starts so in
// practice, and requiring a known keyword keeps "a=b.db" a file. pgx
// would take any other keyword as a server setting (search_path=...),
// but so it would take a file name with an '=' in it.
func isKeyValueDSN(s string) bool {
	key, _, ok := kvKey(s, skipSpace(s, 0))
	return ok && isPGKeyword(strings.ToLower(key))
}

func isPGKeyword(key string) bool {
	return pgKeywords[key] || strings.HasPrefix(key, "pool_")
}

// pgKeywords are the connection parameters of libpq (PostgreSQL 15 docs
// 34.1.2, "Parameter Key Words", and those later versions added), and
// those pgx reads itself: pgconn.ParseConfig (servicefile, krbspn),
// pgx.ParseConfig (the caches, the query mode) and, as the prefix pool_,
// pgxpool.ParseConfig.
var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true,
	"password": true, "passfile": true, "channel_binding": true, "connect_timeout": true,
	"client_encoding": true, "options": true, "application_name": true,
	"fallback_application_name": true, "keepalives": true, "keepalives_idle": true,
	"keepalives_interval": true, "keepalives_count": true, "tcp_user_timeout": true,
	"replication": true, "gssencmode": true, "sslmode": true, "requiressl": true,
	"sslcompression": true, "sslcert": true, "sslkey": true, "sslpassword": true,
	"sslrootcert": true, "sslcrl": true, "sslcrldir": true, "sslsni": true,
	"requirepeer": true, "ssl_min_protocol_version": true, "ssl_max_protocol_version": true,
	"krbsrvname": true, "gsslib": true, "service": true, "target_session_attrs": true,
	// PostgreSQL 16 to 18.
	"require_auth": true, "sslcertmode": true, "gssdelegation": true, "load_balance_hosts": true,
	"sslnegotiation": true, "min_protocol_version": true, "max_protocol_version": true,
	"sslkeylogfile": true, "oauth_issuer": true, "oauth_client_id": true,
	"oauth_client_secret": true, "oauth_scope": true, "scram_client_key": true, "scram_server_key": true,
	// pgx.
	"servicefile": true, "krbspn": true, "statement_cache_capacity": true,
	"description_cache_capacity": true, "default_query_exec_mode": true,
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
