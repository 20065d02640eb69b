package policy

import "testing"

func TestHeaderHost(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "mx1.example.net": true, "mx-1": true, "[192.0.2.1]": true,
		"mx 1": false, "mx\t1": false, "mx\v1": false, "mx\u00a01": false, "mx\x00": false,
		"mx;1": false, "mx(1)": false, `mx"1`: false, "mx\n1": false,
	} {
		if got := HeaderHost(s); got != want {
			t.Errorf("HeaderHost(%q) = %v, want %v", s, got, want)
		}
	}
}
