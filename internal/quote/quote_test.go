package quote

import (
	"strings"
	"testing"
)

func TestShort(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                 `"plain"`,
		"esc\x1b[2J\r\n":        `"esc\x1b[2J\r\n"`,
		"\xff":                  `"\xff"`,
		strings.Repeat("a", 64): `"` + strings.Repeat("a", 64) + `"`,
		strings.Repeat("b", 65): `"` + strings.Repeat("b", 64) + `"...`,
	} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %s, want %s", in, got, want)
		}
	}
}
