package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The macro language of RFC 7208 §7, for what go/spf does not expand for
// us: the exp= modifier's domain-spec and the explanation text it names
// (go/spf ignores exp=), and the syntax check of strict.go.

// macroTok is one piece of a macro-string: a literal, or a macro-expand
// (RFC 7208 §7.1). "%%", "%_" and "%-" are macro-expands that stand for a
// literal.
type macroTok struct {
	lit     string // the text of a literal, or of "%%", "%_", "%-"
	expand  bool   // a macro-expand, not a macro-literal
	letter  byte   // lower case; 0 for a literal
	upper   bool   // URL-escape the value (RFC 7208 §7.3)
	digits  int    // keep this many right-hand parts; 0: all
	reverse bool
	delims  string
}

var errMacro = errors.New("spf: bad macro")

// parseMacros splits s into tokens. explain allows what an explain-string
// may hold besides a macro-string: spaces (RFC 7208 §7.1).
func parseMacros(s string, explain bool) ([]macroTok, error) {
	var toks []macroTok
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' && explain, c >= 0x21 && c <= 0x7e && c != '%':
			j := i
			for j < len(s) && s[j] != '%' && (s[j] >= 0x21 && s[j] <= 0x7e || s[j] == ' ' && explain) {
				j++
			}
			toks, i = append(toks, macroTok{lit: s[i:j]}), j-1
		case c != '%':
			return nil, fmt.Errorf("%w: octet %#x", errMacro, c)
		case i+1 >= len(s):
			return nil, fmt.Errorf("%w: %% at the end", errMacro)
		case s[i+1] == '%' || s[i+1] == '_' || s[i+1] == '-':
			toks, i = append(toks, macroTok{lit: map[byte]string{'%': "%", '_': " ", '-': "%20"}[s[i+1]], expand: true}), i+1
		case s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated %%{", errMacro)
			}
			t, err := parseMacro(s[i+2 : i+end])
			if err != nil {
				return nil, err
			}
			toks, i = append(toks, t), i+end
		default:
			return nil, fmt.Errorf("%w: %%%c", errMacro, s[i+1])
		}
	}
	return toks, nil
}

// parseMacro reads macro-letter transformers *delimiter, the inside of
// "%{...}".
func parseMacro(s string) (macroTok, error) {
	if s == "" || !strings.ContainsRune("slodiphcrtv", rune(toLower(s[0]))) {
		return macroTok{}, fmt.Errorf("%w: %%{%s}", errMacro, s)
	}
	t := macroTok{expand: true, letter: toLower(s[0]), upper: s[0] >= 'A' && s[0] <= 'Z'}
	rest := s[1:]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n > 0 {
		d, err := strconv.Atoi(rest[:n])
		if err != nil || d == 0 {
			// RFC 7208 §7.3 keeps "the number of right-hand parts"; zero
			// parts is no name at all.
			return macroTok{}, fmt.Errorf("%w: %%{%s}: digits", errMacro, s)
		}
		t.digits = min(d, 128)
	}
	rest = rest[n:]
	if rest != "" && toLower(rest[0]) == 'r' {
		t.reverse, rest = true, rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return macroTok{}, fmt.Errorf("%w: %%{%s}: delimiter", errMacro, s)
		}
	}
	t.delims = rest
	return t, nil
}

func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// macroEnv holds what the letters stand for (RFC 7208 §7.3).
type macroEnv struct {
	sender   string // <sender>, "postmaster@" the domain when it had no local-part
	domain   string // <domain>: the domain whose record is being read
	ip       netip.Addr
	helo     string
	receiver string
	now      time.Time
	ptr      func() string // %{p}, asked only when used
}

// expandMacros expands s (a macro-string, or an explain-string when
// explain) in env.
func expandMacros(s string, env macroEnv, explain bool) (string, error) {
	toks, err := parseMacros(s, explain)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range toks {
		if t.letter == 0 {
			b.WriteString(t.lit)
			continue
		}
		if !explain && (t.letter == 'c' || t.letter == 'r' || t.letter == 't') {
			return "", fmt.Errorf("%w: %%{%c} outside an explanation", errMacro, t.letter)
		}
		b.WriteString(t.apply(env.value(t.letter)))
	}
	return b.String(), nil
}

// value is what a letter stands for before transformers.
func (e macroEnv) value(letter byte) string {
	local, dom, _ := strings.Cut(e.sender, "@")
	switch letter {
	case 's':
		return e.sender
	case 'l':
		return local
	case 'o':
		return dom
	case 'd':
		return e.domain
	case 'i':
		return dotted(e.ip)
	case 'p':
		if e.ptr != nil {
			return e.ptr()
		}
		return "unknown"
	case 'v':
		if e.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return e.helo
	case 'c':
		return e.ip.String()
	case 'r':
		return e.receiver
	case 't':
		return strconv.FormatInt(e.now.Unix(), 10)
	}
	return ""
}

// apply splits v on the delimiters (default "."), reverses, keeps the
// right-hand parts, joins with "." and URL-escapes for an upper-case
// letter (RFC 7208 §7.3). Without transformers or delimiters the value
// is not split ("If transformers or delimiters are provided"), so a local
// part such as "a..b." stays as it is.
func (t macroTok) apply(v string) string {
	if t.digits == 0 && !t.reverse && t.delims == "" {
		if t.upper {
			return urlEscape(v)
		}
		return v
	}
	delims := t.delims
	if delims == "" {
		delims = "."
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if t.reverse {
		slices.Reverse(parts)
	}
	if t.digits > 0 && t.digits < len(parts) {
		parts = parts[len(parts)-t.digits:]
	}
	v = strings.Join(parts, ".")
	if t.upper {
		v = urlEscape(v)
	}
	return v
}

// urlEscape escapes every octet outside RFC 3986's "unreserved" set, as
// RFC 7208 §7.3 requires.
func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// dotted is %{i}: an IPv4 address as is, an IPv6 address as 32 dotted
// nibbles (RFC 7208 §7.3), in upper case as §7.4's example writes them.
func dotted(ip netip.Addr) string {
	if ip.Is4() || !ip.IsValid() {
		return ip.String()
	}
	var b strings.Builder
	for _, x := range ip.As16() {
		fmt.Fprintf(&b, "%X.%X.", x>>4, x&0xf)
	}
	return strings.TrimSuffix(b.String(), ".")
}
