package config

import (
	"strings"
	"testing"
)

// A DSN with a misspelt or foreign scheme is refused at load, naming the
// key and the scheme and never the password; a capitalised scheme is
// PostgreSQL.
func TestDatabaseScheme(t *testing.T) {
	for dsn, ok := range map[string]bool{
		"Postgres://mx:s3cret@db/mx":   true,
		"POSTGRESQL://mx:s3cret@db/mx": true,
		"postgress://mx:s3cret@db/mx":  false,
		"mysql://mx:s3cret@db/mx":      false,
		"/var/lib/mxpolicyd/mx.db":     true,
	} {
		_, err := Load(write(t, "database: "+dsn+"\n"), testChecks, nil)
		if ok != (err == nil) {
			t.Errorf("%s: err %v, want ok=%v", dsn, err, ok)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), "database:") || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("%s: error %q must name the key and hide the password", dsn, err)
		}
	}
}
