package db

import "testing"

func TestStorable(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want bool
	}{
		{[]string{"alice@example.org", "", "Grüße"}, true},
		{[]string{"ok", "b\xffad"}, false},
		{[]string{"nu\x00l"}, false},
		{nil, true},
	} {
		if got := Storable(c.in...); got != c.want {
			t.Errorf("Storable(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// Each bad byte and each NUL becomes one U+FFFD; valid text is kept.
func TestToStorable(t *testing.T) {
	for in, want := range map[string]string{
		"ok":                 "ok",
		"gr\xfc\xdfe":        "gr\uFFFD\uFFFDe",
		"a\x00b":             "a\uFFFDb",
		"\xff":               "\uFFFD",
		"d\u00e9j\u00e0\xc3": "d\u00e9j\u00e0\uFFFD",
		"\uFFFD":             "\uFFFD",
	} {
		if got := ToStorable(in); got != want || !Storable(got) {
			t.Errorf("ToStorable(%q) = %q, want %q", in, got, want)
		}
	}
}
