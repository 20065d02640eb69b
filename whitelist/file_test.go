package whitelist

import (
	"errors"
	"strings"
	"testing"
)

func TestReadClientsFile(t *testing.T) {
	got, err := readFile("testdata/whitelist_clients", FormatClients)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind    Kind
		value   string
		line    string
		comment string
	}{
		{ClientName, "mailout.example.net", ":8", "bulk sender: every retry comes from another host of the pool"},
		{ClientName, "payroll.example.org", ":11", "payroll provider: unique envelope sender per try, never retries twice"},
		{ClientName, "tickets.example.com", ":14", "ticketing system, retries only after 24 hours"},
		{ClientName, `/^smtp[0-9]+\.bank\.example$/`, ":17", "bank statements, numbered hosts"},
		{ClientName, `/^out-[a-z]{2}[0-9]+\.mx\.example\.com$/`, ":20", "outbound cluster with sequential names"},
		{Client, "192.0.2.0/25", ":23", "hosted exchange, PTRs differ from HELO, listed by address"},
		{Client, "198.51.100.17", ":24", "hosted exchange, PTRs differ from HELO, listed by address"},
		{Client, "203.0.113.0/24", ":27", "old-style partial entry: the whole 203.0.113.0/24"},
		{Client, "10.20.0.0/16", ":30", "legacy relay by /16"},
		{Client, "2001:db8:4000::/36", ":33", "IPv6 outbound relays (postgrey accepts IPv6 since 1.36, CIDR since 1.37)"},
		{Client, "2001:db8:1::25", ":34", "IPv6 outbound relays (postgrey accepts IPv6 since 1.36, CIDR since 1.37)"},
		{ClientName, "mx.example.edu", ":37", "university list server"},
	}
	if len(got) != len(want) {
		t.Fatalf("read %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Kind != w.kind || g.Value != w.value || !strings.HasSuffix(g.Source, w.line) || g.Comment != w.comment {
			t.Errorf("entry %d = %s %q %s %q; want %s %q %s %q", i, g.Kind, g.Value, g.Source, g.Comment,
				w.kind, w.value, w.line, w.comment)
		}
	}
}

func TestReadRecipientsFile(t *testing.T) {
	got, err := readFile("testdata/whitelist_recipients", FormatRecipients)
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, e := range got {
		if e.Kind != Recipient {
			t.Errorf("%s has kind %s", e.Value, e.Kind)
		}
		values = append(values, e.Value)
	}
	want := `postmaster@ abuse@ support@example.com subsidiary.example /^alerts-[0-9]+@example\.org$/`
	if strings.Join(values, " ") != want {
		t.Errorf("values = %q, want %q", strings.Join(values, " "), want)
	}
}

// A bad file is reported line by line with its name, so one edit fixes it.
func TestReadBadFile(t *testing.T) {
	_, err := readFile("testdata/bad_clients", FormatClients)
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{"testdata/bad_clients:2:", "testdata/bad_clients:4:", "testdata/bad_clients:5:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), ":3:") {
		t.Errorf("error %q blames the good line 3", err)
	}
	if _, err := readFile("testdata/missing", FormatClients); err == nil || !strings.Contains(err.Error(), "testdata/missing") {
		t.Errorf("missing file: error %v does not name it", err)
	}
}

func TestSplitComment(t *testing.T) {
	tests := []struct{ in, text, comment string }{
		{"# all comment", "", "all comment"},
		{"  host.example  # why  ", "host.example", "why"},
		{`/^a#b$/`, `/^a#b$/`, ""}, // '#' inside a value is kept
		{"host.example\t#\tpartner\trelay", "host.example", "partner relay"},
		{"", "", ""},
	}
	for _, tt := range tests {
		text, comment := splitComment(tt.in)
		if text != tt.text || comment != tt.comment {
			t.Errorf("splitComment(%q) = %q, %q; want %q, %q", tt.in, text, comment, tt.text, tt.comment)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"clients": FormatClients, "postgrey-recipients": FormatRecipients, "Senders": FormatSenders} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error("ParseFormat(csv) succeeded")
	}
}

// A line too long for any entry is named by file:line as a refusal of the
// file's content (ErrInvalid), not as a scanner's error.
func TestListFileLongLine(t *testing.T) {
	_, err := parseList(strings.NewReader("192.0.2.1\n"+strings.Repeat("a", maxLine+1)+"\n"), "clients", FormatClients)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "clients:2: a line longer than 65536 bytes") ||
		strings.Contains(err.Error(), "bufio") {
		t.Errorf("long line: %v", err)
	}
}
