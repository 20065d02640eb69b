package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
)

// runCLI runs the command tree with args and returns the exit code main
// would give and the error's text, or the output on success.
func runCLI(args ...string) (int, string) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return exitCode(err), err.Error()
	}
	return 0, out.String()
}

// adminSetup writes a config naming a migrated SQLite database and one
// rate-limit rule, and returns its path and a directory for input files.
func adminSetup(t *testing.T) (cfg, dir string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "mxpolicyd.yaml")
	yaml := "database: " + filepath.Join(dir, "mx.db") + "\n" +
		"ratelimit: {rules: [{name: per-user, key: [sasl_username], limit: 3/1h}]}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI("-c", cfg, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d, %s", code, out)
	}
	return cfg, dir
}

// A value the admin commands refuse exits 2 and names what is wrong; a
// file that cannot be read, an entry already there, or a database that
// fails under a valid entry exits 1. Values are echoed quoted and
// cut short, so a pasted file or a control byte never reaches the
// terminal as it is.
func TestAdminValueExitCodes(t *testing.T) {
	cfg, dir := adminSetup(t)
	bad := filepath.Join(dir, "bad_clients")
	if err := os.WriteFile(bad, []byte("ok.example.com\nnot a host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("a", 100<<10) + "\x1b[2J"
	long := strings.Repeat("c", 2000)
	today := time.Now().Format(time.DateOnly)
	if code, out := runCLI("-c", cfg, "whitelist", "add", "client", "192.0.2.7"); code != 0 {
		t.Fatalf("whitelist add: exit %d, %s", code, out)
	}
	cases := []struct {
		args []string
		code int
		say  string
		not  string // must not be in the message
	}{
		{[]string{"whitelist", "add", "client", ""}, 2, "bad client value: empty value", ""},
		{[]string{"whitelist", "add", "client", "300.1.1.1"}, 2, `"300.1.1.1" is not an IP address`, ""},
		{[]string{"whitelist", "add", "client", "0.0.0.0/0"}, 2, "prefix /0 is too wide", ""},
		{[]string{"whitelist", "add", "client", "::/0"}, 2, "prefix /0 is too wide", ""},
		{[]string{"whitelist", "add", "client", "192.0.2.\xff"}, 2, "not valid UTF-8", ""},
		{[]string{"whitelist", "add", "client_name", "mx.example.com\x1b[2J"}, 2, "control character U+001B", ""},
		{[]string{"whitelist", "add", "client_name", strings.Repeat("a", 600)}, 2, "longer than 512 bytes", ""},
		{[]string{"whitelist", "add", "client_name", "/(?<=x)y/"}, 2, "bad regular expression", ""},
		{[]string{"whitelist", "add", "client_name", "/[a-z]{5}/"}, 2, "host names of unrelated organisations", ""},
		{[]string{"whitelist", "add", "client_name", "//"}, 2, `"//" is an empty regex`, "not allowed in a host name"},
		{[]string{"whitelist", "add", "recipient", "@"}, 2, "needs a local part before the @", "write  for"},
		{[]string{"whitelist", "add", "sender", "@@@"}, 2, "needs a local part before the @", "write @@"},
		{[]string{"whitelist", "add", "client", "192.0.2.8", "--comment", "red\x1b[31m"}, 2, `comment "red\x1b[31m"`, ""},
		{[]string{"whitelist", "add", "client", "192.0.2.8", "--comment", long}, 2, "comment \"ccc", "creator"},
		{[]string{"whitelist", "add", "client", "192.0.2.8", "--by", long}, 2, "creator \"ccc", "comment"},
		{[]string{"whitelist", "add", "client", "192.0.2.8", "--expires", "2020-01-01"}, 2, "not in the future", ""},
		{[]string{"whitelist", "add", "client", "192.0.2.8", "--expires", today}, 2, "not in the future", ""},
		{[]string{"whitelist", "add", "client", "192.0.2.7"}, 1, "whitelist: entry already exists: client 192.0.2.7", "whitelist: whitelist:"},
		{[]string{"whitelist", "remove", "client", "300.1.1.1"}, 2, "not an IP address", ""},
		{[]string{"whitelist", "remove", "client_name", "/o/"}, 2, "unrelated organisations", ""},
		{[]string{"whitelist", "import", ""}, 2, "FILE is empty", ""},
		{[]string{"whitelist", "import", bad}, 2, "bad_clients:2:", ""},
		{[]string{"whitelist", "import", dir}, 1, "is a directory", ""},
		{[]string{"greylist", "list", "--limit", "-1"}, 2, "--limit -1", ""},
		{[]string{"greylist", "list", "--client", huge}, 2, "client \"aaa", ""},
		{[]string{"greylist", "release", "--sender", huge}, 2, "bad sender \"aaa", ""},
		{[]string{"greylist", "forget", "--recipient", huge}, 2, "bad recipient \"aaa", ""},
		{[]string{"ratelimit", "reset", "nosuchrule", "k"}, 2, `rule "nosuchrule", key "k": ratelimit: no such rule in the config (rules: per-user)`, ""},
		{[]string{"ratelimit", "reset", "per-user", "nobody"}, 2, `key "nobody": ratelimit: no counter`, ""},
		{[]string{"ratelimit", "reset", "per-user", huge}, 2, "no counter", ""},
		{[]string{"import", "postgrey", "--ipv4cidr", "33", bad}, 2, "--ipv4cidr must be 1 to 32, got 33", "ipv6cidr"},
		{[]string{"import", "postgrey", "--ipv4cidr", "0", bad}, 2, "--ipv4cidr must be 1 to 32, got 0", ""},
		{[]string{"import", "postgrey", "--ipv4cidr", "-1", bad}, 2, "--ipv4cidr must be 1 to 32, got -1", ""},
		{[]string{"import", "postgrey", "--ipv6cidr", "129", bad}, 2, "--ipv6cidr must be 1 to 128, got 129", "ipv4cidr"},
		{[]string{"import", "sqlgrey", ""}, 2, "empty database DSN", ""},
	}
	for _, c := range cases {
		code, got := runCLI(append([]string{"-c", cfg}, c.args...)...)
		name := strings.Join(c.args, " ")
		if len(name) > 100 {
			name = name[:100] + "..."
		}
		if code != c.code || !strings.Contains(got, c.say) || c.not != "" && strings.Contains(got, c.not) {
			t.Errorf("mxpolicyd %q: exit %d, %q; want exit %d and %q", name, code, got, c.code, c.say)
		}
		if len(got) > 1000 || strings.IndexByte(got, 0x1b) >= 0 || strings.IndexByte(got, 0xff) >= 0 {
			t.Errorf("mxpolicyd %q: message of %d bytes, or with a raw control byte: %.300q", name, len(got), got)
		}
	}
	// A database that fails under a valid entry is a runtime failure.
	d := dbtest.OpenDSN(t, filepath.Join(dir, "mx.db"))
	if _, err := d.SQL.Exec("DROP TABLE whitelist"); err != nil {
		t.Fatal(err)
	}
	if code, got := runCLI("-c", cfg, "whitelist", "add", "client", "192.0.2.9"); code != 1 || !strings.Contains(got, "no such table") {
		t.Errorf("whitelist add on a broken database: exit %d, %q; want exit 1", code, got)
	}
}
