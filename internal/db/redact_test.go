package db

import (
	"net/url"
	"strings"
	"testing"
)

// Redact masks the password of a DSN in any form a user may write or a
// library may quote, case-insensitively, and leaves a file path alone.
// The second group are the forms the first regular expressions let
// through: a URL password with a space, a user name with '?' or '#', a
// libpq value with a backslash escape, a key=value DSN with "://" inside
// a value.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://mx:s3cret@db.example:5432/mx?sslmode=verify-full": "postgres://mx:xxxxx@db.example:5432/mx?sslmode=verify-full",
		"postgresql://mx@db/mx":                                   "postgresql://mx@db/mx",
		"postgres://db/mx?user=mx&password=s3cret":                "postgres://db/mx?user=mx&password=xxxxx",
		"postgres://db/mx?PassWord=s3cret&user=mx":                "postgres://db/mx?PassWord=xxxxx&user=mx",
		"Postgres://mx:s3cret@db/mx":                              "Postgres://mx:xxxxx@db/mx",
		"POSTGRESQL://mx:s3cret@db/mx":                            "POSTGRESQL://mx:xxxxx@db/mx",
		"mysql://mx:s3cret@db/mx":                                 "mysql://mx:xxxxx@db/mx",
		"postgress://mx:s3cret@db/mx":                             "postgress://mx:xxxxx@db/mx",
		"postgres://mx:s3c@ret@db/mx":                             "postgres://mx:xxxxx@db/mx",
		"postgres://:s3cret@db/mx":                                "postgres://:xxxxx@db/mx",
		"connect postgres://mx:s3cret@db/mx: EOF":                 "connect postgres://mx:xxxxx@db/mx: EOF",
		"host=db user=mx password=s3cret dbname=mx":               "host=db user=mx password=xxxxx dbname=mx",
		"postgres://mx@db/mx?sslmode=verify-full&sslpassword=k3y": "postgres://mx@db/mx?sslmode=verify-full&sslpassword=xxxxx",
		"host=db sslpassword=k3y dbname=mx":                       "host=db sslpassword=xxxxx dbname=mx",
		"host=db password='s3 c\\'ret' dbname=mx":                 "host=db password=xxxxx dbname=mx",
		"host=db PASSWORD = s3cret":                               "host=db PASSWORD = xxxxx",
		"/var/lib/mxpolicyd/greylist.db":                          "/var/lib/mxpolicyd/greylist.db",
		// A slash or two missing (KindOf refuses these).
		"postgres:/mx:s3cret@db.example/mx":   "postgres:/mx:xxxxx@db.example/mx",
		"postgresql:mx:s3cret@db.example/mx":  "postgresql:mx:xxxxx@db.example/mx",
		"/var/lib/mx/postgres:archive@x/a.db": "/var/lib/mx/postgres:archive@x/a.db",
		// Once let through.
		"postgres://u:pa s3cret@h/db":                            "postgres://u:xxxxx@h/db",
		"postgres://u?x:s3cret@h/db":                             "postgres://u?x:xxxxx@h/db",
		"postgres://u#x:s3cret@h/db?sslmode=require":             "postgres://u#x:xxxxx@h/db?sslmode=require",
		"postgres://u:s3/cret@h/db":                              "postgres://u:xxxxx@h/db",
		"postgres://h/db?pass%77ord=s3cret&user=mx":              "postgres://h/db?pass%77ord=xxxxx&user=mx",
		"host=db password=abc\\ s3cret dbname=mx":                "host=db password=xxxxx dbname=mx",
		"host=db password=s3cret options='-c x=http://y'":        "host=db password=xxxxx options='-c x=http://y'",
		"options=-cx=a://b password = 's3 cret' host=db":         "options=-cx=a://b password = xxxxx host=db",
		"host=db password= s3cret":                               "host=db password= xxxxx",
		"host=db password='s3cret":                               "<unparseable DSN>",
		"host=db s3cret":                                         "<unparseable DSN>",
		"cannot connect: password=s3cret host=db":                "cannot connect: password=xxxxx host=db",
		"failed: sslpassword='s3 cret' (host=db)":                "failed: sslpassword=xxxxx (host=db)",
		"failed: password='s3cret":                               "failed: password=xxxxx",
		"dial postgres://mx:s3cret@db/mx?password=s3cret: EOF":   "dial postgres://mx:xxxxx@db/mx?password=xxxxx",
		"search_path=mx password=s3cret":                         "search_path=mx password=xxxxx",
		"pool_max_conns=4 sslpassword=s3cret":                    "pool_max_conns=4 sslpassword=xxxxx",
		"postgres://mx@db/mx?options=-c%20search_path%3Dmx&x=1":  "postgres://mx@db/mx?options=-c%20search_path%3Dmx&x=1",
		"postgresql://mx:s3cret@db1:5432,db2:5432/mx?sslmode=on": "postgresql://mx:xxxxx@db1:5432,db2:5432/mx?sslmode=on",
		// pgx's connect errors quote no password and must stay readable.
		"failed to connect to `user=mx database=mx`: password authentication failed for user \"mx\"": "failed to connect to `user=mx database=mx`: password authentication failed for user \"mx\"",
	} {
		got := Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "s3") || strings.Contains(got, "cret") {
			t.Errorf("Redact(%q) leaks the password: %q", in, got)
		}
	}
}

// Whatever the password, written as libpq or a URL allows, none of it is
// left in the redacted DSN.
func FuzzRedact(f *testing.F) {
	for _, p := range []string{"s3cret", "pa ss", `a\b'c`, "u@h/db?x#y", "a://b", "=", "'"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if len(p) < 4 || strings.ContainsAny(p, "\x00") || strings.Contains(p, redacted) {
			return // a password holding the mask could not be told from it
		}
		quoted := "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(p) + "'"
		// In a URL query '&' ends a value: a password there is escaped.
		for dsn, shown := range map[string]string{
			"host=db.example password=" + quoted + " dbname=mx":                p,
			"sslpassword = " + quoted:                                          p,
			"postgres://mx:" + p + "@db.example/mx":                            p,
			"postgres://db.example/mx?password=" + url.QueryEscape(p) + "&a=b": url.QueryEscape(p),
		} {
			rest := strings.Replace(dsn, shown, "", 1)
			got := Redact(dsn)
			// The masks become NUL, which no password here holds, so a
			// password made of their letters is not found across one
			// and the text beside it ("xxx " in "xxxxx dbname").
			masked := strings.NewReplacer(redacted, "\x00", unparseable, "\x00").Replace(got)
			if strings.Contains(masked, shown) && !strings.Contains(rest, shown) {
				t.Errorf("Redact(%q) = %q shows the password", dsn, got)
			}
		}
	})
}
