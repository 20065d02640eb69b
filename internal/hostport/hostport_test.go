package hostport

import "testing"

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		s       string
		anyHost bool
		ok      bool
	}{
		{"127.0.0.1:10040", false, true},
		{"[::1]:53", false, true},
		{":10040", true, true},
		{":10040", false, false},
		{"127.0.0.1:0", true, false},
		{"127.0.0.1:65536", true, false},
		{"127.0.0.1:99999", true, false},
		{"127.0.0.1:-1", true, false},
		{"127.0.0.1:smtp", true, false},
		{"127.0.0.1", true, false},
		{"", true, false},
	} {
		if err := Check(c.s, c.anyHost); (err == nil) != c.ok {
			t.Errorf("Check(%q, %v) = %v, want ok %v", c.s, c.anyHost, err, c.ok)
		}
	}
}
