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
