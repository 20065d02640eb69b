package db

import (
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Every libpq keyword starts a key=value DSN, not only the common ones, and
// libpq allows white space around '=' (PostgreSQL docs 34.1.1.1, 34.1.2).
func TestKindOfKeyValue(t *testing.T) {
	for _, dsn := range []string{
		"sslrootcert=/etc/ssl/root.crt host=db password=s3cret",
		"sslpassword=s3cret host=db",
		"target_session_attrs=read-write host=a,b password=s3cret",
		"pool_max_conns=4 host=db password=s3cret",
		"statement_cache_capacity=64 host=db",
		"host = db password = s3cret",
		"host\t=db",
		"keepalives_idle=30 host=db",
		"channel_binding=require host=db",
	} {
		if got, err := KindOf(dsn); err != nil || got != Postgres {
			t.Errorf("KindOf(%q) = %q, %v; want %q", dsn, got, err, Postgres)
		}
	}
}

// A string that holds a password or a "://" but is no DSN is refused, not
// taken as a file name, and the error does not echo it.
func TestKindOfRefusesSecretPaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, dsn := range []string{
		"search_path=mx password=s3cret host=db",
		"mx.db Password = s3cret",
		"mx.db?password=s3cret",
		"./x://mx:s3cret@db",
		"file://mx:s3cret@db/mx.db",
		"postgres:/mx:s3cret@db.example/mx", // a slash missing
		"postgresql:mx:s3cret@db.example/mx",
		"POSTGRES:/mx:s3cret@db/mx",
	} {
		_, err := KindOf(dsn)
		if err == nil {
			t.Errorf("KindOf(%q) accepted it", dsn)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("KindOf(%q) error leaks the password: %v", dsn, err)
		}
		if _, err := Open(ctxT(t), dsn, nil); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %v, want an error without the password", dsn, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("refused DSNs created %v", ents)
	}
}

// What KindOf takes for key=value, pgx reads so too: spaces around '=',
// a quoted value, a pool setting first.
func TestKeyValueDSNParses(t *testing.T) {
	dsn := "pool_max_conns = 3 host = db.example port=5433 password = 's3 c\\'ret' sslmode=disable"
	if k, err := KindOf(dsn); err != nil || k != Postgres {
		t.Fatalf("KindOf = %q, %v", k, err)
	}
	cfg, err := pgConfig(dsn, false, "mxpolicyd")
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.ConnConfig
	if cc.Host != "db.example" || cc.Port != 5433 || cc.Password != "s3 c'ret" || cfg.MaxConns != 3 {
		t.Errorf("host %q port %d password %q max_conns %d", cc.Host, cc.Port, cc.Password, cfg.MaxConns)
	}
}

// The DSN's default_query_exec_mode and application_name are kept (the
// first is what a transaction pool needs, README "Behind PgBouncer");
// without them, pgx's cached statements and mxpolicyd's name.
func TestDSNQueryModeAndApplicationName(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		mode pgx.QueryExecMode
		app  string
	}{
		{"postgres://mx@db/mx", pgx.QueryExecModeCacheStatement, "mxpolicyd serve"},
		{"postgres://mx@db/mx?default_query_exec_mode=exec", pgx.QueryExecModeExec, "mxpolicyd serve"},
		{"host=db default_query_exec_mode=simple_protocol application_name=mx1", pgx.QueryExecModeSimpleProtocol, "mx1"},
		{"postgres://mx@db/mx?fallback_application_name=mx2", pgx.QueryExecModeCacheStatement, "mx2"},
	} {
		cfg, err := pgConfig(c.dsn, false, "mxpolicyd serve")
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.ConnConfig.DefaultQueryExecMode; got != c.mode {
			t.Errorf("%s: query mode %v, want %v", c.dsn, got, c.mode)
		}
		if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != c.app {
			t.Errorf("%s: application_name %q, want %q", c.dsn, got, c.app)
		}
	}
}
