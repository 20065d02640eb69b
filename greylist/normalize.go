package greylist

import (
	"regexp"
	"strings"
)

// NullSender is the key of the null envelope sender (bounces, DSNs), kept
// distinct from every address.
const NullSender = "<>"

// Normalize returns the greylisting key of an envelope sender: the parts
// that change from one message to the next are removed or collapsed to
// "#", so the next message of a mailing list or ESP matches the triplet its
// last one passed (postgrey's BATV rule and SQLgrey's SRS rules, from the
// postgrey and sqlgrey scripts, applied to the key). The raw sender stays
// in the logs and the row. Rules, in order:
//
//   - lowercase; "" and "<>" become NullSender; a trailing dot on the
//     domain is dropped. The domain is otherwise kept as it is.
//   - BATV: "prvs=TAG=local", "msprvs1=TAG=local", "btv1==TAG==local" → local.
//   - SRS: "SRS0=HASH=TT=domain=local@fwd" and
//     "SRS1=HASH=fwd0==HASH=TT=domain=local@fwd" → "srs=domain=local@fwd",
//     keeping the forwarder's domain (the one SPF checked) and the original
//     sender, without the per-message hash and timestamp.
//   - "+extension" is dropped (mailing-list VERP: list-bounces+user=dom).
//   - an embedded recipient at the end ("-user=example.com") becomes "#".
//   - UUIDs and per-message tokens become "#": digit runs, hex runs of 8
//     or more with a digit, alphanumeric runs of 16 or more with a digit
//     (Amazon SES "0100018c…-…-000000", Mandrill, Mailchimp, SparkPost ids);
//     adjacent "#" tokens merge.
func Normalize(sender string) string { return normalize(sender, true) }

// NormalizeMailbox is Normalize without the rules for per-message parts
// (the embedded recipient, UUIDs, tokens): the key of one mailbox, not of
// a stream of messages. "12345678@qq.com" stays itself, where Normalize
// makes it "#@qq.com" and so the same as every other numeric mailbox
// there. The replies check keys the addresses users wrote to with it.
func NormalizeMailbox(addr string) string { return normalize(addr, false) }

func normalize(addr string, tokens bool) string {
	s := strings.ToLower(strings.TrimSpace(addr))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return NullSender
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return normalizeLocal(s, tokens)
	}
	local, domain := normalizeLocal(s[:i], tokens), strings.TrimSuffix(s[i+1:], ".")
	if local == s[:i] && len(domain) == len(s)-i-1 {
		return s // nothing changed: no new string for the common address
	}
	return local + "@" + domain
}

// normalizeLocal applies the rules to a local part, those for per-message
// parts only with tokens. The cheap byte tests in front of each regexp
// keep the common plain address off them: this runs for every request,
// cached passes included.
func normalizeLocal(l string, tokens bool) string {
	if strings.IndexByte(l, '=') >= 0 {
		l = stripBATV(l)
		if dom, orig, ok := cutSRS(l); ok {
			return "srs=" + dom + "=" + normalizeLocal(orig, tokens)
		}
	}
	if head, _, ok := strings.Cut(l, "+"); ok && head != "" {
		l = head
	}
	if !tokens {
		return l
	}
	if strings.IndexByte(l, '=') >= 0 {
		l = embeddedRcpt.ReplaceAllString(l, "${1}#")
	}
	if strings.Count(l, "-") >= 4 {
		l = uuid.ReplaceAllString(l, "#")
	}
	return collapseTokens(l)
}

var (
	batv = regexp.MustCompile(`^(?:prvs|msprvs\d*)=[a-z0-9]+=(.+)$`)
	btv  = regexp.MustCompile(`^btv1==[a-z0-9]+==(.+)$`)
	// srs0 and srs1 as in the SRS paper (Shevek, "Sender Rewriting Scheme");
	// the separator after the tag may be '=', '+' or '-'.
	srs0 = regexp.MustCompile(`^srs0[=+-][^=]*=[^=]*=([^=]+)=(.+)$`)
	srs1 = regexp.MustCompile(`^srs1[=+-][^=]*=[^=]+==[^=]*=[^=]*=([^=]+)=(.+)$`)
	// embeddedRcpt is "…-user=example.com" at the end of a local part, the
	// VERP form of ezmlm and most list managers.
	embeddedRcpt = regexp.MustCompile(`(^|[-.])[a-z0-9_.]+=[a-z0-9-]+(?:\.[a-z0-9-]+)+$`)
	uuid         = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
)

// stripBATV removes BATV tags, repeatedly (a BATV signer behind another).
func stripBATV(l string) string {
	for {
		m := batv.FindStringSubmatch(l)
		if m == nil {
			m = btv.FindStringSubmatch(l)
		}
		if m == nil {
			return l
		}
		l = m[1]
	}
}

// cutSRS returns the original sender's domain and local part of an SRS
// address.
func cutSRS(l string) (domain, local string, ok bool) {
	if !strings.HasPrefix(l, "srs") {
		return "", "", false
	}
	m := srs0.FindStringSubmatch(l)
	if m == nil {
		m = srs1.FindStringSubmatch(l)
	}
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func isSep(c byte) bool { return c == '.' || c == '-' || c == '_' || c == '=' }

// collapseTokens replaces per-message tokens between separators with "#",
// merging a run of them (with their separators) into one "#".
func collapseTokens(l string) string {
	if !hasVariable(l) {
		return trimSeps(l) // what collapseAll returns, without building it
	}
	return collapseAll(l)
}

func collapseAll(l string) string {
	var b strings.Builder
	lastHash := false
	start := 0
	for i := 0; i <= len(l); i++ {
		if i < len(l) && !isSep(l[i]) {
			continue
		}
		tok := l[start:i]
		var sep string
		if i < len(l) {
			sep = l[i : i+1]
		}
		start = i + 1
		if tok == "#" || variable(tok) {
			if lastHash {
				continue // merge: "#-#" → "#"; the separator before it stays
			}
			b.WriteString("#")
			lastHash = true
		} else {
			b.WriteString(tok)
			lastHash = false
		}
		b.WriteString(sep)
	}
	if out := strings.TrimRight(b.String(), ".-_="); out != "" {
		return out
	}
	return l // only separators: keep it as it is
}

// trimSeps drops trailing separators; only separators stay as they are.
func trimSeps(l string) string {
	if out := strings.TrimRight(l, ".-_="); out != "" {
		return out
	}
	return l
}

// hasVariable reports whether collapseTokens would replace a token of l;
// when not, l needs no new string.
func hasVariable(l string) bool {
	start := 0
	for i := 0; i <= len(l); i++ {
		if i < len(l) && !isSep(l[i]) {
			continue
		}
		if tok := l[start:i]; tok == "#" || variable(tok) {
			return true
		}
		start = i + 1
	}
	return false
}

// variable reports whether a token looks generated per message rather than
// chosen by a person: "john2024" stays, "109548965" and "6fc5f2a4ce" go.
func variable(tok string) bool {
	if tok == "" {
		return false
	}
	digits, hex, alnum := 0, true, true
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f':
		case c >= 'g' && c <= 'z':
			hex = false
		default:
			hex, alnum = false, false
		}
	}
	switch {
	case digits == len(tok):
		return true
	case hex && digits > 0 && len(tok) >= 8:
		return true
	case alnum && digits > 0 && len(tok) >= 16:
		return true
	}
	return false
}
