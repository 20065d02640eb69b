package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// config check --probe prints each list's self-check state after the
// config, as YAML comments, and fails when a list is unhealthy.
func TestConfigCheckProbe(t *testing.T) {
	srv := listsServer(t, "2.0.0.127.pubres.test. 300 IN A 127.255.255.254")
	path := filepath.Join(t.TempDir(), "mxpolicyd.yaml")
	write := func(lists string) {
		cfg := "dns:\n  server: " + srv.Addr() + "\ndnsbl:\n  lists:\n" + lists
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("    - good.test\n    - wild.test\n    - pubres.test\n    - site: priv.test\n      self_check: false\n")
	var out bytes.Buffer
	err := runConfigCheck(context.Background(), &out, path, true)
	if err == nil || !strings.Contains(err.Error(), "2 DNS list(s)") {
		t.Errorf("error %v, want one counting the 2 failing lists", err)
	}
	for _, want := range []string{
		"#   good.test: healthy\n",
		"#   wild.test: unhealthy: answered 127.0.0.2 for 127.0.0.1, which RFC 5782 §5 says no list may contain\n",
		"#   pubres.test: unhealthy: answered 127.255.255.254 for 127.0.0.2: query through a public or open resolver (127.255.255.254)\n",
		"#   priv.test: not checked: self_check: false\n",
		"self_check: false", // the effective config keeps the opt-out
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	write("    - good.test\n")
	out.Reset()
	if err := runConfigCheck(context.Background(), &out, path, true); err != nil {
		t.Errorf("a healthy list: %v\n%s", err, out.String())
	}
	out.Reset()
	write("    - wild.test\n")
	if err := runConfigCheck(context.Background(), &out, path, false); err != nil || strings.Contains(out.String(), "self-check") {
		t.Errorf("without --probe nothing is asked: %v\n%s", err, out.String())
	}
	if n := srv.Queries("1.0.0.127.wild.test", dns.TypeA); n != 1 {
		t.Errorf("wild.test's 127.0.0.1 asked %d times, want once (by the first run only)", n)
	}
}

// config check reads the whitelist files as serve does: one missing, or
// with a bad line, fails it (exit 2) naming the file; with the whitelist
// off, its files are not read.
func TestConfigCheckReadsWhitelistFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "clients")
	bad := filepath.Join(dir, "bad_clients")
	if err := os.WriteFile(good, []byte("192.0.2.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("192.0.2.0/24\nnot a host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		cfg  string
		want string // in the error; "" for none
	}{
		{"whitelist: {clients_files: [" + good + "]}\n", ""},
		{"whitelist: {clients_files: [" + missing + "]}\n", missing},
		{"whitelist: {clients_files: [" + good + ", " + bad + "]}\n", bad + ":2"},
		{"whitelist: {clients_files: [" + missing + "]}\nchecks: {whitelist: {enabled: false}}\n", ""},
	}
	for _, c := range cases {
		path := filepath.Join(dir, "mxpolicyd.yaml")
		if err := os.WriteFile(path, []byte(c.cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := runConfigCheck(context.Background(), &out, path, false)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v, want it accepted", c.cfg, err)
		case c.want != "" && (err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want exit 2 naming %q", c.cfg, err, c.want)
		}
	}
}
