package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/ratelimit"
)

// ratelimit list's text shows keys, which clients chose (a sender, a
// login), escaped: a control character neither drives the terminal nor
// forges a column or a row.
func TestRateLimitListEscapesKeys(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	err := printUsage(&out, []ratelimit.Entry{
		{Rule: "per-sender", Kind: ratelimit.KindRate, Key: "evil\x1b[2J\tforged\nrule2", Used: 80, Rest: now.Add(time.Minute)},
		{Rule: "stolen-login", Kind: ratelimit.KindDistinctNetworks, Key: "bob", Used: 50, Networks: []string{"10.0.0.0/16\x07"}},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.ContainsAny(text, "\x1b\x07") || strings.Count(text, "\n") != 3 {
		t.Errorf("unescaped client text in:\n%q", text)
	}
	if !strings.Contains(text, `"evil\x1b[2J\tforged\nrule2"`) {
		t.Errorf("the key is not shown quoted:\n%s", text)
	}
}
