package spf

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// headers are the result headers spf.header asks for: Received-SPF for
// the identity that answers, Authentication-Results for both identities
// checked (helo is nil when HELO was not checked).
func (c *Checker) headers(helo, mf *evaluation, mailFrom string) []string {
	var hs []string
	if c.cfg.Header.receivedSPF() {
		hs = append(hs, header(c.receiver, ascii(mf.vars), asciiAddr(mailFrom)))
	}
	if c.cfg.Header.authResults() {
		var checked []vars
		if helo != nil && mf.vars.identity != "helo" {
			checked = append(checked, ascii(helo.vars))
		}
		hs = append(hs, authResults(c.authserv, append(checked, ascii(mf.vars))...))
	}
	return hs
}

// ascii is v with the names and the address a header shows written in
// ASCII. Postfix accepts a UTF-8 MAIL FROM or HELO without SMTPUTF8
// (strict_smtputf8 = no, its default), and a message that is not
// internationalized may not carry 8-bit header text (RFC 5322 §2.2; RFC
// 6532 allows it only in messages sent with SMTPUTF8). Domain names
// become A-labels (RFC 5890 §2.3.2.1), as RFC 8616 §4 and §5 ask of SPF
// and Authentication-Results for such messages; an address whose local
// part is not ASCII has no ASCII form, and is shown by its domain alone,
// which both fields' grammars allow (RFC 8601 §2.2, pvalue; RFC 7208
// §9.1, a dot-atom).
func ascii(v vars) vars {
	v.domain, v.helo, v.sender = asciiName(v.domain), asciiName(v.helo), asciiAddr(v.sender)
	return v
}

func asciiAddr(addr string) string {
	if isASCII(addr) {
		return addr
	}
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return asciiName(addr)
	}
	local, domain := addr[:i], asciiName(addr[i+1:])
	if !isASCII(local) {
		return domain
	}
	return local + "@" + domain
}

// asciiName is name with its labels in A-label form; "" when it has none
// (not a domain name: it was only ever sent as a HELO argument).
func asciiName(name string) string {
	if isASCII(name) {
		return name
	}
	a, err := idna.ToASCII(name)
	if err != nil || !isASCII(a) {
		return ""
	}
	return a
}

// headerName is a configured host name (spf.receiver, spf.authserv_id)
// as the headers write it: in A-labels, or as configured when it has no
// A-label form. Converted once, in New.
func headerName(name string) string {
	if a := asciiName(name); a != "" {
		return a
	}
	return name
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// authResults builds an Authentication-Results field (RFC 8601 §2.2),
// one resinfo per identity checked, the SPF properties as §2.7.2 defines
// them:
//
//	Authentication-Results: mx.example.org; spf=pass smtp.helo=mail.example.com;
//	  spf=fail smtp.mailfrom=a@example.com
//
// on one line, since Postfix's PREPEND takes a single line. An identity
// SPF could not check (a HELO name that is not a domain) says so with
// spf=none and the name as given. A field longer than maxHeaderLine
// leaves out the identities' values, which the grammar makes optional
// (RFC 8601 §2.2, propspec).
func authResults(authserv string, checked ...vars) string {
	h := authResultsWith(authserv, true, checked)
	if len(h) > maxHeaderLine {
		h = authResultsWith(authserv, false, checked)
	}
	return h
}

func authResultsWith(authserv string, props bool, checked []vars) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(authserv)
	for _, v := range checked {
		b.WriteString("; spf=")
		b.WriteString(v.result)
		if props {
			b.WriteString(" smtp.")
			b.WriteString(v.identity)
			b.WriteString("=")
			writePValue(&b, arIdentity(v))
		}
	}
	return b.String()
}

// arIdentity is the identity's value: the MAIL FROM address (with
// "postmaster@" when it had no local-part, RFC 8601 §2.7.2), or the HELO
// name.
func arIdentity(v vars) string {
	if v.identity == "helo" {
		return v.helo
	}
	return v.sender
}

// writePValue writes a property value (RFC 8601 §2.2: value / [ [ local-part
// ] "@" ] domain-name) as a token when it is one, an address as is when
// both parts are dot-atoms, and anything else as a quoted-string.
func writePValue(b *strings.Builder, s string) {
	if local, domain, ok := strings.Cut(s, "@"); ok && isDotAtom(local) && isToken(domain) || isToken(s) {
		b.WriteString(s)
		return
	}
	writeQuoted(b, s)
}

// isToken is RFC 2045 §5.1's token: printable ASCII but for space and
// tspecials.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// header builds a Received-SPF field (RFC 7208 §9.1, grammar as corrected
// by erratum 5436):
//
//	Received-SPF: pass (mx.example.org: domain of a@example.com designates
//	  192.0.2.1 as permitted sender) receiver=mx.example.org;
//	  client-ip=192.0.2.1; envelope-from="a@example.com"; helo=mail.example.com;
//	  identity=mailfrom
//
// on one line, since Postfix's PREPEND takes a single line. The comment
// wording follows the RFC's examples and pypolicyd-spf.
//
// A line may not exceed maxHeaderLine, and Postfix takes a MAIL FROM or
// HELO far longer than SMTP allows (line_length_limit, 2048): a field
// that would be too long leaves out the comment, which the grammar makes
// optional, and then the client's own values, envelope-from and helo.
func header(receiver string, v vars, mailFrom string) string {
	h := receivedSPF(receiver, v, mailFrom, true, true)
	if len(h) > maxHeaderLine {
		h = receivedSPF(receiver, v, mailFrom, false, true)
	}
	if len(h) > maxHeaderLine {
		h = receivedSPF(receiver, v, mailFrom, false, false)
	}
	return h
}

// maxHeaderLine is the longest line of a message, CRLF excluded (RFC
// 5322 §2.1.1: "MUST be no more than 998 characters").
const maxHeaderLine = 998

// receivedSPF builds the field, with or without its comment and the
// client's values.
func receivedSPF(receiver string, v vars, mailFrom string, comment, client bool) string {
	who := v.sender
	if who == "" {
		who = v.helo
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Received-SPF: ")
	b.WriteString(v.result)
	if comment {
		b.WriteString(" (")
		writeComment(&b, receiver+": "+commentText(v.result, who, v.ip))
		b.WriteString(")")
	}
	for i, kv := range [...][2]string{
		{"receiver", receiver},
		{"client-ip", v.ip},
		{"envelope-from", mailFrom},
		{"helo", v.helo},
		{"identity", v.identity},
	} {
		if !client && (kv[0] == "envelope-from" || kv[0] == "helo") {
			continue
		}
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" ")
		b.WriteString(kv[0])
		b.WriteString("=")
		writeValue(&b, kv[1])
	}
	return b.String()
}

func commentText(result, who, ip string) string {
	switch result {
	case "pass":
		return "domain of " + who + " designates " + ip + " as permitted sender"
	case "fail":
		return "domain of " + who + " does not designate " + ip + " as permitted sender"
	case "softfail":
		return "domain of transitioning " + who + " does not designate " + ip + " as permitted sender"
	case "neutral":
		return ip + " is neither permitted nor denied by domain of " + who
	case "temperror":
		return "error in processing during lookup of " + who
	case "permerror":
		return "permanent error in processing domain of " + who
	}
	if who == "" {
		return "no identity to check"
	}
	return "domain of " + who + " does not designate permitted sender hosts"
}

// writeComment writes s as comment text: it escapes what would end or nest an RFC 5322 comment, and drops
// control characters, which a header line cannot carry.
func writeComment(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r < ' ' || r == 0x7f:
			continue
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
}

// writeValue writes a dot-atom as is and anything else as a quoted-string
// (RFC 5322 §3.2.3, §3.2.4), as the key-value grammar requires.
func writeValue(b *strings.Builder, s string) {
	if isDotAtom(s) {
		b.WriteString(s)
		return
	}
	writeQuoted(b, s)
}

// writeQuoted writes s as an RFC 5322 quoted-string, dropping control
// characters.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r < ' ' || r == 0x7f:
			continue
		case r == '"' || r == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
