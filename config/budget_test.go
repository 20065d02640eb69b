package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsFitRequestTimeout(t *testing.T) {
	c := Default(testChecks)
	if err := c.validateBudget(); err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, s := range c.Checks {
		sum += s.Timeout
	}
	if sum > c.RequestTimeout || c.RequestTimeout > MaxRequestTimeout {
		t.Fatalf("default shares %s must fit request_timeout %s, at most %s", sum, c.RequestTimeout, MaxRequestTimeout)
	}
}

func TestBudgetMustFit(t *testing.T) {
	p := write(t, "checks:\n  spf: {timeout: 4500ms}\n")
	_, err := Load(p, testChecks, nil)
	if err == nil {
		t.Fatal("shares over request_timeout loaded")
	}
	for _, want := range []string{"request_timeout", "6s", "8s", "checks.whitelist.timeout 500ms",
		"checks.dnsbl.timeout 1.5s", "checks.spf.timeout 4.5s", "checks.greylist.timeout 1.5s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error must name %q: %v", want, err)
		}
	}
	// A disabled check takes no share; a bigger budget makes room.
	for _, ok := range []string{
		"checks:\n  spf: {timeout: 4500ms}\n  dnsbl: {enabled: false}\n  whitelist: {enabled: false}\n",
		"request_timeout: 8s\nchecks:\n  spf: {timeout: 4500ms}\n",
	} {
		if _, err := Load(write(t, ok), testChecks, nil); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestRequestTimeoutUnderPostfixTimeout(t *testing.T) {
	_, err := Load(write(t, "request_timeout: 9s\n"), testChecks, nil)
	if err == nil || !strings.HasPrefix(strings.TrimPrefix(err.Error(), "config: "), "request_timeout:") {
		t.Fatalf("request_timeout 9s must fail naming the key, got %v", err)
	}
}
