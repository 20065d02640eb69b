package dnsbl

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSite reads list entries in postscreen_dnsbl_sites syntax
// (postconf(5): "zone=127.0.0.[2..11]*weight"). An entry it accepts has a
// valid lowercase zone, a finite non-zero weight and ranges that run
// forwards, and printing it back in that syntax and parsing again gives
// the same entry: the parsed form loses nothing the admin wrote.
func FuzzParseSite(f *testing.F) {
	for _, s := range []string{"zen.spamhaus.org", "zen.spamhaus.org=127.0.0.[2..11]*2",
		"list.dnswl.org=127.0.[0..255].[1;2;3]*-5", "b.barracudacentral.org*1.5", "bl.example.=127.0.0.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := parseSite(in)
		if err != nil {
			// The zone may hold a DQS key: an error never quotes it. It
			// may quote the filter or weight after it, escaped (%q), which
			// can hold the zone's text by chance.
			zone, tail := cutSite(in)
			if len(zone) >= 8 && !strings.Contains(strconv.Quote(tail), zone) && strings.Contains(err.Error(), zone) {
				t.Fatalf("parseSite(%q): error %q quotes the zone", in, err)
			}
			return
		}
		if !validDomain(st.zone) || strings.ToLower(st.zone) != st.zone {
			t.Fatalf("parseSite(%q): zone %q", in, st.zone)
		}
		if st.weight == 0 || math.IsNaN(st.weight) || math.IsInf(st.weight, 0) {
			t.Fatalf("parseSite(%q): weight %v", in, st.weight)
		}
		if st.filter != nil {
			for _, rs := range st.filter {
				for _, r := range rs {
					if r.lo > r.hi {
						t.Fatalf("parseSite(%q): range %d..%d", in, r.lo, r.hi)
					}
				}
			}
		}
		out := formatSite(st)
		again, err := parseSite(out)
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("parseSite(%q) = %+v, printed %q, parsed again %+v, %v", in, st, out, again, err)
		}
	})
}

// formatSite prints s in postscreen_dnsbl_sites syntax.
func formatSite(s site) string {
	var b strings.Builder
	b.WriteString(s.zone)
	if s.filter != nil {
		b.WriteByte('=')
		for i, rs := range s.filter {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(formatOctet(rs))
		}
	}
	if s.weight != 1 {
		b.WriteString("*" + strconv.FormatFloat(s.weight, 'g', -1, 64))
	}
	return b.String()
}

func formatOctet(rs []octetRange) string {
	if len(rs) == 1 && rs[0].lo == rs[0].hi {
		return strconv.Itoa(int(rs[0].lo))
	}
	items := make([]string, len(rs))
	for i, r := range rs {
		items[i] = strconv.Itoa(int(r.lo))
		if r.hi != r.lo {
			items[i] += ".." + strconv.Itoa(int(r.hi))
		}
	}
	return "[" + strings.Join(items, ";") + "]"
}

// Found by FuzzParseSite: strconv.ParseFloat reads "NaN" and "Inf", and a
// NaN weight made every score NaN, so no list ever counted.
func TestParseSiteRefusesNonFiniteWeight(t *testing.T) {
	for _, in := range []string{"zen.example*NaN", "zen.example*Inf", "zen.example*-infinity", "zen.example*1e400"} {
		if st, err := parseSite(in); err == nil || !strings.Contains(err.Error(), "finite non-zero") {
			t.Errorf("parseSite(%q) = weight %v, %v; want a finite non-zero error", in, st.weight, err)
		}
	}
}
