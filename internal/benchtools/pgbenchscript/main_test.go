package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun generates the script from the real greylist source: every
// parameter bound, one statement, pgbench's variables declared.
func TestRun(t *testing.T) {
	var b bytes.Buffer
	if err := run("../../../greylist", &b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if placeholder.MatchString(s) || strings.Count(s, ";") != 1 || !strings.HasSuffix(s, ";\n") {
		t.Errorf("want one statement with no $N left, got:\n%s", s)
	}
	for _, v := range []string{`\set c `, `\set h `, `\set s `, `\set r `, "INSERT INTO greylist_triplet", "synchronous_commit"} {
		if !strings.Contains(s, v) {
			t.Errorf("script lacks %q", v)
		}
	}
}

func TestBindRefusesDrift(t *testing.T) {
	exprs := map[int]string{1: "a", 2: "b"}
	for sql, ok := range map[string]bool{
		"SELECT $1, $2, $1":     true,
		"SELECT $1, $2, $3":     false, // a parameter we do not bind
		"SELECT $1":             false, // one we bind is gone
		"SELECT $1, $2; SELECT": false, // pgbench would split it
	} {
		if _, err := bind(sql, exprs); (err == nil) != ok {
			t.Errorf("bind(%q) = %v, want ok=%v", sql, err, ok)
		}
	}
	if got, _ := bind("SELECT $2, $1, $12", map[int]string{1: "a", 2: "b", 12: "c"}); got != "SELECT b, a, c" {
		t.Errorf("bind = %q: $12 must not be read as $1", got)
	}
}

func TestStringConsts(t *testing.T) {
	c, err := stringConsts("../../../greylist")
	if err != nil {
		t.Fatal(err)
	}
	if q := c[statement]; !strings.Contains(q, "ON CONFLICT") || strings.Contains(q, "pgExpired") {
		t.Errorf("%s not folded: %.200q", statement, q)
	}
}
