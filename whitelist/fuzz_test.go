package whitelist

import (
	"strings"
	"testing"
)

// FuzzNormalize parses values of every kind. A value it accepts has a
// canonical key that is printable, within the length limit and a fixed
// point: parsing the key gives the same key and form, so what the database
// stores is what `whitelist remove` and the index find again. A domain
// pattern keeps two labels and a regex never matches the empty string.
func FuzzNormalize(f *testing.F) {
	f.Add(uint8(0), "192.0.2.77/24")
	f.Add(uint8(1), "*.Mail.Example.COM.")
	f.Add(uint8(1), `/^smtp[0-9]+\.example\.com$/`)
	f.Add(uint8(2), "Bounce@Example.com")
	f.Add(uint8(3), "postmaster@")
	f.Fuzz(func(t *testing.T, k uint8, v string) {
		kind := kinds[int(k)%len(kinds)]
		p, err := parseValue(kind, v)
		if err != nil {
			return
		}
		if p.key == "" || len(p.key) > maxValueLen || checkText(p.key) != nil {
			t.Fatalf("%s %q: key %q", kind, v, p.key)
		}
		again, err := parseValue(kind, p.key)
		if err != nil || again.key != p.key || again.form != p.form || again.prefix != p.prefix {
			t.Fatalf("%s %q: key %q parses again as %q (form %d, was %d), %v", kind, v, p.key, again.key,
				again.form, p.form, err)
		}
		switch p.form {
		case formDomain, formSub:
			if strings.Count(strings.TrimPrefix(p.key, "."), ".") < minLabels-1 {
				t.Fatalf("%s %q: domain key %q has fewer than %d labels", kind, v, p.key, minLabels)
			}
		case formRegex:
			if p.re == nil || p.re.MatchString("") {
				t.Fatalf("%s %q: regex key %q matches the empty string", kind, v, p.key)
			}
		}
	})
}
