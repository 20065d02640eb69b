package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// Request is one SMTPD access policy request, with every attribute Postfix
// sends up to 3.8 plus tls_sni (3.12). See SMTPD_POLICY_README, "Protocol
// description". Attributes Postfix leaves empty or sends as "0" keep their
// zero value; unknown attributes are ignored.
type Request struct {
	Request        string // always "smtpd_access_policy"
	ProtocolState  string // CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN
	ProtocolName   string // SMTP or ESMTP
	ClientAddress  netip.Addr
	ClientName     string // verified name, or "unknown"
	ClientPort     uint16
	ReverseName    string // reverse_client_name: unverified PTR
	ServerAddress  netip.Addr
	ServerPort     uint16
	HeloName       string
	Sender         string // "" is the null sender
	Recipient      string
	RecipientCount int
	QueueID        string
	Instance       string // one value per message on one connection
	Size           int64
	ETRNDomain     string
	Stress         string
	SASLMethod     string
	SASLUsername   string
	SASLSender     string
	CCertSubject   string
	CCertIssuer    string
	CCertFinger    string
	CCertPubFinger string
	EncProtocol    string
	EncCipher      string
	EncKeysize     int
	TLSSNI         string
	PolicyContext  string
	Compatibility  string
	MailVersion    string
}

// unknown is the value Postfix's smtpd sends for a client name, address
// or port it does not have (smtpd.h: CLIENT_NAME_UNKNOWN,
// CLIENT_ADDR_UNKNOWN, CLIENT_PORT_UNKNOWN, SERVER_PORT_UNKNOWN).
const unknown = "unknown"

// ClientVerified reports whether Postfix verified the client's name
// (forward-confirmed reverse DNS); Postfix sends "unknown" otherwise.
func (r *Request) ClientVerified() bool {
	return r.ClientName != "" && r.ClientName != unknown
}

// SenderDomain is the domain of the envelope sender, lowercased, or "" for
// the null sender or a sender without a domain.
func (r *Request) SenderDomain() string { return Domain(r.Sender) }

// Domain returns the lowercased domain part of addr, or "".
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

// set assigns one attribute. It reports an error only for values that
// cannot be what Postfix sends (a malformed address or number): those mean
// the peer is not Postfix or is broken, and the server then closes.
func (r *Request) set(name, value string) error {
	if p := r.stringField(name); p != nil {
		*p = value
		return nil
	}
	switch name {
	case "client_address":
		return parseAddr(value, &r.ClientAddress)
	case "server_address":
		return parseAddr(value, &r.ServerAddress)
	case "client_port":
		return parsePort(value, &r.ClientPort)
	case "server_port":
		return parsePort(value, &r.ServerPort)
	case "recipient_count":
		return parseInt(value, &r.RecipientCount)
	case "encryption_keysize":
		return parseInt(value, &r.EncKeysize)
	case "size":
		return parseInt64(value, &r.Size)
	}
	return nil // unknown attributes are ignored (SMTPD_POLICY_README)
}

func (r *Request) stringField(name string) *string {
	switch name {
	case "request":
		return &r.Request
	case "protocol_state":
		return &r.ProtocolState
	case "protocol_name":
		return &r.ProtocolName
	case "client_name":
		return &r.ClientName
	case "reverse_client_name":
		return &r.ReverseName
	case "helo_name":
		return &r.HeloName
	case "sender":
		return &r.Sender
	case "recipient":
		return &r.Recipient
	case "queue_id":
		return &r.QueueID
	case "instance":
		return &r.Instance
	case "etrn_domain":
		return &r.ETRNDomain
	case "stress":
		return &r.Stress
	case "sasl_method":
		return &r.SASLMethod
	case "sasl_username":
		return &r.SASLUsername
	case "sasl_sender":
		return &r.SASLSender
	case "ccert_subject":
		return &r.CCertSubject
	case "ccert_issuer":
		return &r.CCertIssuer
	case "ccert_fingerprint":
		return &r.CCertFinger
	case "ccert_pubkey_fingerprint":
		return &r.CCertPubFinger
	case "encryption_protocol":
		return &r.EncProtocol
	case "encryption_cipher":
		return &r.EncCipher
	case "tls_sni":
		return &r.TLSSNI
	case "policy_context":
		return &r.PolicyContext
	case "compatibility_level":
		return &r.Compatibility
	case "mail_version":
		return &r.MailVersion
	}
	return nil
}

// parseAddr accepts an empty value (Postfix omits unknown values) and
// IPv6 with or without brackets or the "IPv6:" prefix, for hand-written input.
func parseAddr(v string, dst *netip.Addr) error {
	v = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]"), "IPv6:")
	if v == "" || v == unknown {
		*dst = netip.Addr{}
		return nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return err
	}
	*dst = a.Unmap()
	return nil
}

// parsePort reads client_port and server_port; a port Postfix does not
// have (unknown: after XCLIENT PORT=[UNAVAILABLE], or a client gone
// before its address was read) is 0.
func parsePort(v string, dst *uint16) error {
	if v == "" || v == unknown {
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	*dst = uint16(n)
	return err
}

func parseInt(v string, dst *int) error {
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	*dst = n
	return err
}

func parseInt64(v string, dst *int64) error {
	if v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	*dst = n
	return err
}
