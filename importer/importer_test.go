package importer

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mxpolicyd/mxpolicyd/greylist"
)

func TestPostgreyDump(t *testing.T) {
	opt := PostgreyOptions{Options: Options{Config: greylist.DefaultConfig(), Now: time.Unix(1796005470, 0)},
		Delay: 2 * time.Second, IPv4CIDR: 24, IPv6CIDR: 64}
	set, rep, err := Postgrey(context.Background(), []string{"testdata/postgrey.dump"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	// alice and alice+news normalize alike: merged, the pass wins.
	if rep.Passed != 1 || rep.Pending != 2 || rep.Merged != 1 || rep.Skipped[SkipHashed] != 1 || rep.Skipped[SkipExpired] != 1 {
		t.Fatalf("report %+v", rep)
	}
	byRcpt := map[string]greylist.ImportTriplet{}
	for _, tr := range set.Triplets {
		byRcpt[tr.Net.String()+" "+tr.Sender+" "+tr.Recipient] = tr
	}
	a := byRcpt["192.0.2.0/24 alice@a.test bob@b.test"]
	if a.PassedAt != time.Unix(1796005458+2, 0) {
		t.Errorf("alice: %+v", a)
	}
	if n := byRcpt["192.0.2.0/24 <> bob@b.test"]; n.FirstSeen.IsZero() || !n.PassedAt.IsZero() {
		t.Errorf("null sender: %+v", n)
	}
	if _, ok := byRcpt["2001:db8::/64 carol@c.test dan@b.test"]; !ok {
		t.Errorf("IPv6 triplet missing: %v", byRcpt)
	}

	// A postgrey keyed by /16 cannot be narrowed to our /24.
	opt.IPv4CIDR = 16
	if _, rep, _ := Postgrey(context.Background(), []string{"testdata/postgrey.dump"}, opt); rep.Skipped[SkipWide] != 4 {
		t.Errorf("wide networks: %+v", rep)
	}
}

// A sender or recipient with a control character (a spam engine's MAIL
// FROM, kept by postgrey as sent) is skipped and counted; the rest
// imports.
func TestPostgreyBadTextSkipped(t *testing.T) {
	opt := PostgreyOptions{Options: Options{Config: greylist.DefaultConfig(), Now: time.Unix(1796005470, 0)},
		Delay: 2 * time.Second, IPv4CIDR: 24, IPv6CIDR: 64}
	p := writeDump(t,
		" 192.0.2.0/a\\00@x.test/r@y.test\n 1796005458,1796005461\n"+
			" 192.0.2.0/b\\ff@x.test/r@y.test\n 1796005458,1796005461\n"+
			" 192.0.2.0/c@x.test/r\\1b@y.test\n 1796005458,1796005461\n"+
			" 192.0.2.0/ok@x.test/r@y.test\n 1796005458,1796005461\n")
	set, rep, err := Postgrey(context.Background(), []string{p}, opt)
	if err != nil {
		t.Fatal(err)
	}
	// The byte that is not UTF-8 comes through postgrey's own key as
	// U+FFFD (the sender normalized, as greylisting keys it): storable and
	// selectable, so it stays.
	var senders []string
	for _, tr := range set.Triplets {
		senders = append(senders, tr.Sender)
	}
	slices.Sort(senders)
	if !slices.Equal(senders, []string{"b\uFFFD@x.test", "ok@x.test"}) || rep.Skipped[SkipBadText] != 2 {
		t.Errorf("senders %q, report %+v: want the NUL and ESC rows skipped", senders, rep)
	}
	// Its raw sender, stored too, is as storable (PostgreSQL refuses text
	// that is not UTF-8, and the whole import with it).
	for _, tr := range set.Triplets {
		if !utf8.ValidString(tr.RawSender) {
			t.Errorf("raw sender %q of %q is not UTF-8", tr.RawSender, tr.Sender)
		}
	}
}

// postgrey --lookup-by-host keys by the client's NetAddr::IP object,
// which prints with its prefix length (do_client_substitutions):
// "192.0.2.7/32/sender/recipient". The length is the client's, not the
// sender's start.
func TestPostgreyLookupByHostKeys(t *testing.T) {
	opt := PostgreyOptions{Options: Options{Config: greylist.DefaultConfig(), Now: time.Unix(1796005470, 0)},
		Delay: 300 * time.Second, IPv4CIDR: 32, IPv6CIDR: 128} // import postgrey --lookup-by-host
	p := writeDump(t,
		" 192.0.2.7/32/alice@a.test/bob@b.test\n 1796000000,1796000400\n"+
			" 2001:db8:0:0:0:0:0:1/128/carol@c.test/dan@d.test\n 1796000000,1796000400\n")
	set, rep, err := Postgrey(context.Background(), []string{p}, opt)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range set.Triplets {
		got = append(got, tr.Net.String()+" "+tr.Sender+" "+tr.Recipient)
	}
	slices.Sort(got)
	want := []string{"192.0.2.0/24 alice@a.test bob@b.test", "2001:db8::/64 carol@c.test dan@d.test"}
	if !slices.Equal(got, want) {
		t.Errorf("triplets %q (report %+v), want %q", got, rep, want)
	}
}

func TestPostgreyBadInput(t *testing.T) {
	opt := PostgreyOptions{Options: Options{Config: greylist.DefaultConfig()}, Delay: 300 * time.Second, IPv4CIDR: 24, IPv6CIDR: 64}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"truncated":        "HEADER=END\n 192.0.2.0/a@b/c@d\n 1,2\n",
		"badvalue":         "HEADER=END\n 192.0.2.0/a@b/c@d\n yesterday\nDATA=END\n",
		"awl_in_triplets":  "HEADER=END\n 192.0.2.1\n 3,1796005461\nDATA=END\n",
		"postgrey_clients": "HEADER=END\n 192.0.2.0/a@b/c@d\n 1,2\nDATA=END\n",
		"no_header":        " 192.0.2.0/a@b/c@d\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Postgrey(context.Background(), []string{p}, opt); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
}

func TestUnescapeDump(t *testing.T) {
	got, err := unescapeDump(`a\\b\20c`)
	if err != nil || got != `a\b c` {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := unescapeDump(`a\2`); err == nil {
		t.Error("short escape accepted")
	}
}

func TestSQLgreySrc(t *testing.T) {
	for src, want := range map[string]string{
		"192.0.2":             "192.0.2.0/24",
		"192.0.2.7":           "192.0.2.7/32",
		"2001:0db8:0000:0000": "2001:db8::/64",
		"2001:0db8:0000:0000:0000:0000:0000:0001": "2001:db8::1/128",
		// The address as Postfix sent it (greymethod full, or smart with
		// no client name), compressed to four fields.
		"2001:db8::25": "2001:db8::25/128",
		"fe80::1:2":    "fe80::1:2/128",
	} {
		a, bits, ok := sqlgreySrc(src)
		if !ok || netip.PrefixFrom(a, bits).String() != want {
			t.Errorf("%s: %v/%d %v, want %s", src, a, bits, ok, want)
		}
	}
	if _, _, ok := sqlgreySrc("mail.example"); ok {
		t.Error("a name parsed as a client")
	}
}

// writeDump writes postgrey's db_dump text around the key and value lines
// of body, and returns its path.
func writeDump(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dump")
	if err := os.WriteFile(p, []byte("HEADER=END\n"+body+"DATA=END\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
