package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMainCodeSummary checks the one-line output scripts/bench.sh parses:
// every key present once, counts matching the run.
func TestMainCodeSummary(t *testing.T) {
	addr := serve(t, newStub(), 0)
	var out, errb bytes.Buffer
	code := mainCode(context.Background(), []string{"-addr", addr, "-conns", "2", "-requests", "20", "-summary"}, &out, &errb)
	if code != 0 {
		t.Fatalf("code %d, err %q", code, errb.String())
	}
	line := out.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("want one line, got %q", line)
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || kv[k] != "" {
			t.Fatalf("field %q: not key=value, or a repeated key, in %q", f, line)
		}
		kv[k] = v
	}
	for k, want := range map[string]string{"sent": "20", "answered": "20", "errors": "0", "idle_opened": "0"} {
		if kv[k] != want {
			t.Errorf("%s=%q, want %q (line %q)", k, kv[k], want, line)
		}
	}
	for _, k := range []string{"req_per_s", "p50_ms", "p99_ms", "dunno", "defer_if_permit", "other", "elapsed_s"} {
		if kv[k] == "" {
			t.Errorf("%s missing from %q", k, line)
		}
	}
	if code := mainCode(context.Background(), []string{"-json", "-summary"}, &out, &errb); code != 2 {
		t.Errorf("-json with -summary: code %d, want 2", code)
	}
}
