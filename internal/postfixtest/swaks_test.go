package postfixtest

import (
	"os"
	"testing"
)

func TestParseSwaks(t *testing.T) {
	b, err := os.ReadFile("testdata/swaks-data-rejected.txt")
	if err != nil {
		t.Fatal(err)
	}
	res := ParseSwaks(string(b))
	for _, tc := range []struct {
		name string
		got  Reply
		want Reply
	}{
		{"greeting", res.Steps[0].Reply, Reply{220, "mx.example.test ESMTP Postfix"}},
		{"ehlo", res.Steps[1].Reply, Reply{250, "mx.example.test\nPIPELINING\nXCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\nCHUNKING"}},
		{"mail", res.Mail(), Reply{250, "2.1.0 Ok"}},
		{"rcpt 0", res.Rcpt(0), Reply{450, "4.2.0 <grey@example.test>: Recipient address rejected: Greylisted"}},
		{"rcpt 1", res.Rcpt(1), Reply{250, "2.1.5 Ok"}},
		{"rcpt 2 (not sent)", res.Rcpt(2), Reply{}},
		{"data", res.Data(), Reply{354, "End data with <CR><LF>.<CR><LF>"}},
		{"data end", res.DataEnd(), Reply{554, "5.7.1 Message rejected:\n5.7.1 virus Eicar-Test-Signature found"}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if got, want := len(res.Steps), 10; got != want {
		t.Errorf("got %d steps, want %d: %+v", got, want, res.Steps)
	}
	if res.Steps[0].Command != "" || res.Steps[2].Command != "XCLIENT ADDR=192.0.2.7" {
		t.Errorf("commands not matched to replies: %+v", res.Steps)
	}
}

func TestParseSwaksNoDialogue(t *testing.T) {
	res := ParseSwaks("=== Trying 127.0.0.1:1...\n*** Error connecting to 127.0.0.1:1:\n***\tIO::Socket::INET6: connect: Connection refused\n")
	if len(res.Steps) != 0 || res.RcptCode(0) != 0 || res.DataEnd().String() != "(no reply)" {
		t.Errorf("got %+v, want no steps", res.Steps)
	}
}
