package main

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"partner relay", "partner relay"},
		{`/^smtp\d+\.example\.com$/`, `/^smtp\d+\.example\.com$/`}, // backslashes alone stay
		{"Jürgen's host", "Jürgen's host"},
		{"two\nlines", `"two\nlines"`},
		{"red\x1b[31m", `"red\x1b[31m"`},
		{"col\tumn", `"col\tumn"`},
		{"bad\xff", `"bad\xff"`},
		{"rtl\u202eevil", `"rtl\u202eevil"`},
		{`"quoted"`, `"\"quoted\""`}, // a leading quote would look escaped
		{"", ""},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// Rows stored before control characters were refused, or written by hand
// in SQL, print as one line each with every column in place.
// A write that fails (a full disk, a closed pipe) fails the command.
func TestPrintEntriesWriteError(t *testing.T) {
	list := []whitelist.Entry{{Kind: whitelist.Client, Value: "192.0.2.0/24"}}
	if err := printEntries(failingWriter{}, list); err == nil {
		t.Error("printEntries to a failing writer succeeded")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

func TestPrintEntriesEscapes(t *testing.T) {
	created := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	list := []whitelist.Entry{
		{Kind: whitelist.Client, Value: "192.0.2.0/24", CreatedBy: "alice", CreatedAt: created,
			Comment: "partner relay"},
		{Kind: whitelist.ClientName, Value: "mx.example.com\x1b[2J", CreatedBy: "bob\r", CreatedAt: created,
			Comment: "fine\nclient  evil.example  never  root  2025-01-01  forged row"},
	}
	var out bytes.Buffer
	if err := printEntries(&out, list); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.ContainsAny(text, "\x1b\r\t") {
		t.Errorf("output carries a control character:\n%q", text)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("output has %d lines, want a header and 2 rows:\n%s", len(lines), text)
	}
	for _, want := range []string{`"mx.example.com\x1b[2J"`, `"bob\r"`, `"fine\nclient  evil.example`} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row %q does not show %s", lines[2], want)
		}
	}
	if !strings.HasSuffix(lines[1], "  partner relay") {
		t.Errorf("plain row %q changed", lines[1])
	}
}
