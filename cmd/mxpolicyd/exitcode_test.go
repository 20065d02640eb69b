package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// A bad command line exits 2 and says what is wrong, before any database
// is opened (the database named here cannot be created); a command that
// only holds subcommands, given none, prints its help and succeeds.
func TestExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "mx.db")
	typo := filepath.Join(t.TempDir(), "typo.db")
	// What a case reads on stdin, by its arguments joined.
	stdin := map[string]string{
		"check --stdin --database " + missing: "request=smtpd_access_policy\nprotocol_state=RCPT\n",
		"check --stdin --dns 127.0.0.1:1":     "request=smtpd_access_policy\nno equals sign\n\n",
	}
	cases := []struct {
		args []string
		code int
		say  string // in the error, or in the output when code is 0
	}{
		{nil, 0, "Available Commands"},
		{[]string{"greylist"}, 0, "Available Commands"},
		{[]string{"--version"}, 0, "mxpolicyd " + version() + "\n"},
		{[]string{"version"}, 0, "mxpolicyd " + version() + "\n"},
		{[]string{"nosuch"}, 2, `unknown command "nosuch" for "mxpolicyd"`},
		{[]string{"serv"}, 2, "did you mean serve?"},
		{[]string{"greylist", "nosuch"}, 2, `unknown command "nosuch" for "mxpolicyd greylist"`},
		{[]string{"whitelist", "lst"}, 2, "did you mean list?"},
		{[]string{"--nosuch"}, 2, "unknown flag"},
		{[]string{"help", "greylist", "list"}, 0, "mxpolicyd greylist list"},
		// What the user typed comes back escaped and cut (internal/quote).
		{[]string{"version", "--a\x1b[31mRED"}, 2, `unknown flag: "--a\x1b[31mRED"`},
		{[]string{strings.Repeat("x", 150)}, 2, `unknown command "` + strings.Repeat("x", 64) + `"...`},
		{[]string{"report", "--database", missing, "--format", strings.Repeat("y", 150)}, 2, `"...`},
		{[]string{"report", "--database", missing, "--limit", "x\x1b"}, 2, `invalid argument "x\x1b" for --limit`},
		{[]string{"help", "nosuch"}, 2, `unknown help topic "nosuch"`},
		{[]string{"completion", "nosuch"}, 2, `unknown command "nosuch" for "mxpolicyd completion"`},
		{[]string{"completion", "bash", "extra"}, 2, "unknown command"},
		{[]string{"serve", "extra"}, 2, "unknown command"},
		{[]string{"report", "--database", missing, "--format", "xml"}, 2, `unknown format "xml" (want text, json, csv or html)`},
		{[]string{"report", "--database", missing, "--report", "bogus"}, 2, `unknown report "bogus"`},
		{[]string{"report", "--database", missing, "--limit", "-1"}, 2, "limit -1"},
		{[]string{"report", "--database", missing, "--since", "soon"}, 2, "want a duration"},
		{[]string{"report", "--database", missing}, 1, "database"},
		{[]string{"import", "postgrey", "--delay", "99999999999", "x"}, 2, "--delay must be 1 to 31536000 seconds"},
		{[]string{"report", "--database", missing, "--since", "9999-12-31"}, 2, "is in the future"},
		{[]string{"ratelimit", "list", "--database", missing, "--min", "NaN"}, 2, "--min: want a percent from 0 to 100, got NaN"},
		{[]string{"ratelimit", "list", "--database", missing, "--min", "-5"}, 2, "--min: want a percent"},
		// check: what a request cannot be.
		{[]string{"check", "--client-address", "192.0.2.1", "--recipient", "b@x.test", "--protocol-state", "BOGUS"}, 2, "--protocol-state \"BOGUS\": want one of CONNECT"},
		{[]string{"check", "--stdin", "--client-address", "192.0.2.1"}, 2, "--client-address: --stdin reads the whole request"},
		{[]string{"check", "--stdin"}, 2, "no request: the input is empty"},
		{[]string{"check", "--stdin", "--database", missing}, 2, "does not end with an empty line"},
		{[]string{"check", "--stdin", "--dns", "127.0.0.1:1"}, 2, "--stdin: policy: malformed attribute line"},
		// An admin command never makes a store out of a mistyped path.
		{[]string{"whitelist", "list", "--database", typo}, 2, "does not exist"},
		{[]string{"greylist", "forget", "--all", "--database", typo}, 2, "does not exist"},
		{[]string{"gc", "--dry-run", "--database", typo}, 2, "does not exist"},
	}
	for _, c := range cases {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(stdin[strings.Join(c.args, " ")]))
		root.SetArgs(c.args)
		err := root.ExecuteContext(context.Background())
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		got := out.String()
		if err != nil {
			got = err.Error()
		}
		if code != c.code || !strings.Contains(got, c.say) {
			t.Errorf("mxpolicyd %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), code, got, c.code, c.say)
		}
	}
	if _, err := os.Stat(typo); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an admin command created %s: %v", typo, err)
	}
}

// fullWriter fails every write, as stdout on a full disk or a closed pipe.
type fullWriter struct{}

func (fullWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A command whose output cannot be written fails (exit 1), as the list
// commands already did: a lost report is not a success.
func TestLostOutputFails(t *testing.T) {
	db := filepath.Join(t.TempDir(), "mx.db")
	for _, args := range [][]string{
		{"version"},
		{"config", "check"},
		{"gc", "--dry-run", "--database", db},
	} {
		if args[0] == "gc" {
			if err := os.WriteFile(db, nil, 0o600); err != nil { // gc never makes a store
				t.Fatal(err)
			}
		}
		root := newRootCmd()
		root.SetOut(fullWriter{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err == nil || exitCode(err) != 1 {
			t.Errorf("mxpolicyd %s to a full disk: %v, want exit 1", strings.Join(args, " "), err)
		}
	}
}

// migrate prints the migrations it applied before one failed: each was
// committed, so the output says where the store stands.
func TestMigratePrintsWhatItAppliedBeforeAFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mx.db")
	d, err := db.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SQL.Exec("CREATE TABLE replies (x INTEGER)"); err != nil { // in 0006's way
		t.Fatal(err)
	}
	d.Close()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"migrate", "--database", path})
	err = root.ExecuteContext(context.Background())
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "0006_replies") {
		t.Fatalf("migrate: %v, want exit 1 naming 0006_replies", err)
	}
	if n := strings.Count(out.String(), "applied "); n != 5 {
		t.Errorf("migrate printed %d applied migrations, want the 5 before 0006:\n%s", n, out.String())
	}
}
