package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mxpolicyd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsValidate(t *testing.T) {
	c, err := Load("", testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[0] != "127.0.0.1:10040" || c.RequestTimeout != 6*time.Second || !c.SkipSASL {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if allowed := c.AllowedClients; len(allowed) != 2 || !allowed[0].Addr().IsLoopback() {
		t.Errorf("default allowed_clients not loopback: %v", allowed)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	t.Setenv(EnvDatabase, "")
	c, err := Load(write(t, ""), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(testChecks); !reflect.DeepEqual(*c, want) {
		t.Errorf("an empty file gave\n%+v\nwant the defaults\n%+v", *c, want)
	}
}

func TestFileThenFlags(t *testing.T) {
	p := write(t, "listen: [\"unix:/run/mx.sock\"]\nrequest_timeout: 7s\nchecks:\n  greylist: {on_error: \"DEFER_IF_PERMIT 4.3.0 try later\"}\n")
	c, err := Load(p, testChecks, func(c *Config) { c.Observe = true })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[0] != "unix:/run/mx.sock" || c.RequestTimeout != 7*time.Second || !c.Observe {
		t.Errorf("file or flag not applied: %+v", c)
	}
	g := c.Checks["greylist"]
	if g.OnError.String() != "DEFER_IF_PERMIT 4.3.0 try later" || g.Timeout != Default(testChecks).Checks["greylist"].Timeout {
		t.Errorf("checks.greylist not merged with its defaults: %+v", g)
	}
	if c.Checks["dnsbl"].OnError != policy.DunnoAction {
		t.Error("a check the file does not name lost its defaults")
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	tests := map[string]string{
		"no_such_key: 1\n":                                       "no_such_key",
		"listen: [\"nohostport\"]\n":                             "listen:",
		"listen: [\"unix:relative.sock\"]\n":                     "listen:",
		"listen: [\"127.0.0.1:99999\"]\n":                        "listen: want host:port or unix:/path, got \"127.0.0.1:99999\": port must be a number from 1 to 65535",
		"listen: [\"127.0.0.1:0\"]\n":                            "port must be a number from 1 to 65535",
		"listen: [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n":           "listen: \"127.0.0.1:1\" is given twice",
		"listen: [\"unix:/" + strings.Repeat("s", 107) + "\"]\n": "holds at most 107 bytes",
		"dns: {server: \"127.0.0.1:99999\"}\n":                   "dns.server: port must be a number from 1 to 65535",
		"dns: {server: \":53\"}\n":                               "dns.server: must name a host",
		"allowed_clients: [\"10.0.0.0/33\"]\n":                   "allowed_clients:",
		"socket_mode: \"999\"\n":                                 "socket_mode:",
		"max_connections: 0\n":                                   "max_connections:",
		"request_timeout: 1h\n":                                  "request_timeout:",
		"memory_limit_mib: 8\n":                                  "memory_limit_mib:",
		"log: {format: xml}\n":                                   "log.format:",
		"log: {level: loud}\n":                                   "log.level:",
		"log: {level: info+2}\n":                                 "log.level:",
		"checks: {greylist: {on_error: \"450\"}}\n":              "checks.greylist.on_error:",
		"checks: {spf: {on_error: \"REJECT no\"}}\n":             "checks.spf.on_error:",
		"checks: {nosuch: {timeout: 1s}}\n":                      "checks.nosuch:",
		"checks: {dnsbl: {timeout: 1m}}\n":                       "checks.dnsbl.timeout:",
		"dns: {server: \"nohostport\"}\n":                        "dns.server:",
		"whitelist: {refresh: 1ms}\n":                            "whitelist.refresh:",
		"metrics: {listen: \"127.0.0.1:1\", path: x}\n":          "metrics.path:",
		"idle_timeout: banana\n":                                 "idle_timeout",
		"hostname: \"mx 1\"\n":                                   "hostname: must be a host name",
		"hostname: \"mx(1)\"\n":                                  "hostname: must be a host name",
		"dnsbl: {reject_threshold: .nan}\n":                      "dnsbl.reject_threshold: must be a finite number greater than 0",
		"dnsbl: {reject_threshold: .inf}\n":                      "dnsbl.reject_threshold: must be a finite number greater than 0",
	}
	for body, key := range tests {
		_, err := Load(write(t, body), testChecks, nil)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v does not name %s", body, err, key)
		}
	}
}

func TestDatabaseFromEnvRedacted(t *testing.T) {
	t.Setenv(EnvDatabase, "postgres://mx:s3cret@db.example/mx")
	c, err := Load(write(t, "database: /var/lib/x.db\n"), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database != "postgres://mx:s3cret@db.example/mx" {
		t.Errorf("environment did not override the file: %q", c.Database)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "db.example") {
		t.Errorf("effective config not redacted:\n%s", out)
	}
	if c.Database != "postgres://mx:s3cret@db.example/mx" {
		t.Error("Redacted changed the config itself")
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load("/nonexistent/mx.yaml", testChecks, nil); err == nil {
		t.Error("missing config file accepted")
	}
}

func TestDQSKeyRedacted(t *testing.T) {
	c, err := Load(write(t, `dnsbl:
  lists:
    - "abcdefghijklmnopqrstuvwxyz.zen.dq.spamhaus.net=127.0.0.[2..11]*2"
    - {site: "secretkey.example-list.net", name: example}
    - "bl.spamcop.net"
`), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.YAML()
	for _, secret := range []string{"abcdefghijklmnopqrstuvwxyz", "secretkey"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("config output shows %q:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"REDACTED.zen.dq.spamhaus.net=127.0.0.[2..11]*2", "bl.spamcop.net"} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("config output lacks %q:\n%s", kept, out)
		}
	}
	if !strings.HasPrefix(c.DNSBL.Lists[0].Site, "abcdef") {
		t.Error("Redacted changed the config itself")
	}
}

// The DQS key is redacted however the site is written: a trailing dot,
// spaces, capitals (dnsbl parses it; config does not guess).
func TestDQSKeyRedactedAnySpelling(t *testing.T) {
	c, err := Load(write(t, `dnsbl:
  lists:
    - "SecretKey.zen.dq.spamhaus.net.=127.0.0.[2..11]*2"
    - " secretkey.DBL.dq.spamhaus.net. "
`), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.YAML()
	if strings.Contains(strings.ToLower(string(out)), "secretkey") {
		t.Errorf("config output shows the key:\n%s", out)
	}
	for _, kept := range []string{"REDACTED.zen.dq.spamhaus.net=127.0.0.[2..11]*2", "REDACTED.dbl.dq.spamhaus.net"} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("config output lacks %q:\n%s", kept, out)
		}
	}
}
