package config

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// Values are parsed once, when the file is read; the effective config
// prints them as the file writes them.
func TestTypedAtLoad(t *testing.T) {
	c, err := Load(write(t, `allowed_clients: ["10.1.2.3", "192.168.7.0/16", "::ffff:10.9.9.9", "2001:db8::1"]
socket_mode: "600"
log: {level: DEBUG}
checks: {greylist: {on_error: "defer_if_permit 4.3.0 try later"}}
`), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Prefixes{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("10.9.9.9/32"), netip.MustParsePrefix("2001:db8::1/128")}
	if !slices.Equal(c.AllowedClients, want) {
		t.Errorf("allowed_clients = %v, want %v", c.AllowedClients, want)
	}
	if c.SocketMode != 0o600 || c.Log.Level.Level() != slog.LevelDebug {
		t.Errorf("socket_mode %v, log.level %v", c.SocketMode, c.Log.Level)
	}
	if a := c.Checks["greylist"].OnError; a.Verb != policy.DeferIfPermit || a.Text != "4.3.0 try later" {
		t.Errorf("checks.greylist.on_error = %#v", a)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"    - 10.1.2.3/32\n", "    - 192.168.0.0/16\n", `socket_mode: "0600"`,
		"    level: debug\n", "        on_error: DEFER_IF_PERMIT 4.3.0 try later\n", "        on_error: DUNNO\n"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("effective config lacks %q:\n%s", line, out)
		}
	}
}

func TestDefaultsPrintAsWritten(t *testing.T) {
	c := Default(testChecks)
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"allowed_clients:\n    - 127.0.0.0/8\n    - ::1/128\n",
		"socket_mode: \"0660\"\n", "    level: info\n", "max_line_bytes: 8192\n", "idle_timeout: 5m30s\n"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("default config lacks %q:\n%s", line, out)
		}
	}
}

// An empty on_error, like an absent one, keeps the check's default.
func TestEmptyOnErrorKeepsDefault(t *testing.T) {
	c, err := Load(write(t, "checks: {spf: {on_error: \"\"}, dnsbl: {on_error: }}\n"), testChecks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Checks["spf"].OnError != policy.DunnoAction || c.Checks["dnsbl"].OnError != policy.DunnoAction {
		t.Errorf("on_error not defaulted: %+v", c.Checks)
	}
}

// Errors a value's own parser returns name the key, the whole path.
func TestParseErrorsNameTheKey(t *testing.T) {
	tests := map[string]string{
		"allowed_clients: [\"10.0.0.0/8\", \"bad\"]\n":    `allowed_clients: bad address "bad"`,
		"allowed_clients: \"10.0.0.1\"\n":                 "allowed_clients: line 1:",
		"socket_mode: 0o660\n":                            `socket_mode: want an octal mode like 0660, got "0o660"`,
		"log:\n  format: json\n  level: loud\n":           `log.level: want debug, info, warn or error, got "loud"`,
		"checks:\n  dnsbl: {}\n  spf: {on_error: FROB}\n": `checks.spf.on_error: policy: unknown action verb "FROB"`,
	}
	for body, want := range tests {
		_, err := Load(write(t, body), testChecks, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}
