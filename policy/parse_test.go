package policy

import (
	"bufio"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// realRequest is a request in the order and shape Postfix 3.8 sends it
// (smtpd_check.c check_policy_service).
const realRequest = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=2001:db8::25
client_name=mail.example.org
client_port=52014
reverse_client_name=mail.example.org
server_address=192.0.2.10
server_port=25
helo_name=mail.example.org
sender=SRS0=HHH=TT=example.com=alice@forwarder.example
recipient=bob@example.net
recipient_count=0
queue_id=
instance=1a2b.5f3c9e11.0
size=12345
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
tls_sni=mx.example.net
policy_context=
compatibility_level=3.6
mail_version=3.8.1

`

func read(t *testing.T, in string, lim Limits) (*Request, error) {
	t.Helper()
	return ReadRequest(bufio.NewReaderSize(strings.NewReader(in), lim.MaxLine+64), lim)
}

func TestReadRequestReal(t *testing.T) {
	r, err := read(t, realRequest, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := Request{
		Request: "smtpd_access_policy", ProtocolState: "RCPT", ProtocolName: "ESMTP",
		ClientAddress: netip.MustParseAddr("2001:db8::25"), ClientName: "mail.example.org",
		ClientPort: 52014, ReverseName: "mail.example.org",
		ServerAddress: netip.MustParseAddr("192.0.2.10"), ServerPort: 25,
		HeloName: "mail.example.org", Sender: "SRS0=HHH=TT=example.com=alice@forwarder.example",
		Recipient: "bob@example.net", Instance: "1a2b.5f3c9e11.0", Size: 12345,
		EncProtocol: "TLSv1.3", EncCipher: "TLS_AES_256_GCM_SHA384", EncKeysize: 256,
		TLSSNI: "mx.example.net", Compatibility: "3.6", MailVersion: "3.8.1",
	}
	if *r != want {
		t.Errorf("got  %+v\nwant %+v", *r, want)
	}
}

func TestReadRequestCases(t *testing.T) {
	const head = "request=smtpd_access_policy\n"
	tests := []struct {
		name string
		in   string
		want func(*Request) bool
		err  error
	}{
		{"value with =", head + "sender=prvs=1234abcd=user@example.com\n\n",
			func(r *Request) bool { return r.Sender == "prvs=1234abcd=user@example.com" }, nil},
		{"empty value", head + "sender=\n\n", func(r *Request) bool { return r.Sender == "" }, nil},
		{"trailing CR tolerated", "request=smtpd_access_policy\r\nrecipient=a@b\r\n\r\n",
			func(r *Request) bool { return r.Recipient == "a@b" }, nil},
		{"unknown ignored", head + "future_attribute=x\n\n", func(r *Request) bool { return true }, nil},
		{"repeated keeps last", head + "recipient=a@x\nrecipient=b@x\n\n",
			func(r *Request) bool { return r.Recipient == "b@x" }, nil},
		{"v4-mapped unmapped", head + "client_address=::ffff:192.0.2.1\n\n",
			func(r *Request) bool { return r.ClientAddress == netip.MustParseAddr("192.0.2.1") }, nil},
		{"stray empty line first", "\n" + head + "\n", func(r *Request) bool { return r.Request != "" }, nil},
		{"bad address", head + "client_address=999.1.1.1\n\n", nil, ErrMalformed},
		{"bad port", head + "client_port=70000\n\n", nil, ErrMalformed},
		{"ports unknown", head + "client_address=unknown\nclient_port=unknown\nserver_port=unknown\n\n",
			func(r *Request) bool { return r.ClientPort == 0 && r.ServerPort == 0 && !r.ClientAddress.IsValid() }, nil},
		{"no equals", head + "garbage\n\n", nil, ErrMalformed},
		{"empty name", head + "=value\n\n", nil, ErrMalformed},
		{"NUL byte", head + "sender=a\x00b\n\n", nil, ErrMalformed},
		{"missing request", "protocol_state=RCPT\n\n", nil, ErrNotAccessQuery},
		{"other request", "request=junk\n\n", nil, ErrNotAccessQuery},
		{"truncated", head + "sender=a", nil, ErrTruncated},
		{"truncated after line", head, nil, ErrTruncated},
		{"clean EOF", "", nil, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := read(t, tc.in, DefaultLimits)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(r) {
				t.Errorf("unexpected request %+v", r)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	lim := Limits{MaxLine: 64, MaxAttrs: 4, MaxRequest: 200}
	head := "request=smtpd_access_policy\n"
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"line at cap", head + "sender=" + strings.Repeat("a", 64-7) + "\n\n", nil},
		{"line over cap", head + "sender=" + strings.Repeat("a", 64-6) + "\n\n", ErrLineTooLong},
		{"huge line", head + "sender=" + strings.Repeat("a", 1<<20) + "\n\n", ErrLineTooLong},
		{"too many attrs", head + strings.Repeat("x=y\n", 4) + "\n", ErrTooManyAttrs},
		{"request too big", head + strings.Repeat("sender="+strings.Repeat("a", 50)+"\n", 3) + "\n", ErrRequestTooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(t, tc.in, lim)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestRequestHelpers(t *testing.T) {
	r := &Request{Sender: "Alice@Example.COM.", ClientName: "unknown"}
	if d := r.SenderDomain(); d != "example.com" {
		t.Errorf("SenderDomain = %q", d)
	}
	if r.ClientVerified() {
		t.Error("unknown client name counted as verified")
	}
	if Domain("") != "" || Domain("noat") != "" {
		t.Error("Domain of an address without @ should be empty")
	}
}
