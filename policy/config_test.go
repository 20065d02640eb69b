package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestServerConfigYAML(t *testing.T) {
	var c ServerConfig
	err := yaml.Unmarshal([]byte(`listen: ["unix:/run/p.sock"]
allowed_clients: ["192.0.2.7", "198.51.100.9/24", "::ffff:192.0.2.8", "2001:db8::1", "::ffff:203.0.113.0/120"]
socket_mode: "660"
max_line_bytes: 1024
idle_timeout: 1m
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	want := Prefixes{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("192.0.2.8/32"), netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("203.0.113.0/24")} // a mapped network is the IPv4 one peers are matched against
	if !slices.Equal(c.AllowedClients, want) || c.SocketMode != 0o660 || c.MaxLine != 1024 || c.IdleTimeout != time.Minute {
		t.Errorf("decoded %+v", c)
	}
	out, err := yaml.Marshal(DefaultServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"allowed_clients:\n    - 127.0.0.0/8\n    - ::1/128\n", "socket_mode: \"0660\"\n",
		"max_connections: 1000\n", "max_request_bytes: 65536\n"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("default lacks %q:\n%s", line, out)
		}
	}
}

func TestServerConfigRefuses(t *testing.T) {
	for body, want := range map[string]string{
		`allowed_clients: ["10.0.0.0/33"]`: `bad network "10.0.0.0/33"`,
		`allowed_clients: ["example.org"]`: `bad address "example.org"`,
		`socket_mode: "999"`:               `want an octal mode like 0660, got "999"`,
		`socket_mode: "1777"`:              `want an octal mode like 0660, got "1777"`,
	} {
		var c ServerConfig
		if err := yaml.Unmarshal([]byte(body), &c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", body, err, want)
		}
	}
	for _, bad := range []func(*ServerConfig){
		func(c *ServerConfig) { c.Listen = nil },
		func(c *ServerConfig) { c.Listen = []string{"unix:relative"} },
		func(c *ServerConfig) { c.Listen = []string{"nohostport"} },
		func(c *ServerConfig) { c.MaxConnections = 0 },
		func(c *ServerConfig) { c.MaxAttrs = 1 },
		func(c *ServerConfig) { c.IdleTimeout = time.Millisecond },
		func(c *ServerConfig) { c.SocketMode = 0o1000 },
	} {
		c := DefaultServerConfig()
		bad(&c)
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := DefaultServerConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// An action reads back what it prints; empty text is the unset action.
func TestActionText(t *testing.T) {
	for _, in := range []string{"DUNNO", "DEFER_IF_PERMIT 4.7.1 later", "550 5.7.1 no", ""} {
		var a Action
		if err := a.UnmarshalText([]byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if out, _ := a.MarshalText(); string(out) != in {
			t.Errorf("%q printed back as %q", in, out)
		}
	}
	var a Action
	if err := a.UnmarshalText([]byte("450")); err == nil {
		t.Error("a bare code was accepted")
	}
}
