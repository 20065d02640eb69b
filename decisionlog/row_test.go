package decisionlog

import (
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
	"github.com/mxpolicyd/mxpolicyd/policy/policytest"
)

func TestVerb(t *testing.T) {
	verbOf := map[policy.Class]string{
		policy.ClassDunno:   VerbDunno,
		policy.ClassPrepend: VerbPrepend,
		policy.ClassWarn:    VerbWarn,
		policy.ClassDefer:   VerbDefer,
		policy.ClassReject:  VerbReject,
		policy.ClassHold:    VerbHold,
	}
	for in, class := range policytest.ActionClasses() {
		a, err := policy.ParseAction(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := Verb(a), verbOf[class]; got != want {
			t.Errorf("Verb(%q) = %s, want %s", in, got, want)
		}
	}
	if got := Verb(policy.Action{Verb: policy.Code}); got != VerbDunno {
		t.Errorf("Verb of an invalid code action = %s, want DUNNO (what Wire sends)", got)
	}
}

func TestFromDecisionObserve(t *testing.T) {
	d := decision(1)
	d.Observe, d.Would, d.Action = true, policy.Action{Verb: policy.Reject, Text: "5.7.1 listed"}, policy.DunnoAction
	r := FromDecision(d, "mx2")
	if r.Verb != VerbReject || r.Action != "DUNNO" || r.WouldAction != "REJECT 5.7.1 listed" || !r.Observe || r.Host != "mx2" {
		t.Fatalf("observe row %+v", r)
	}
	r = FromDecision(&policy.Decision{Time: t0, Action: policy.DunnoAction}, "")
	if r.Client.IsValid() || r.Verb != VerbDunno {
		t.Fatalf("decision without request: %+v", r)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int32{0: 0, 100 * time.Millisecond: 1, 299600 * time.Millisecond: 300,
		-time.Second: 0, 1 << 62: 1<<31 - 1} {
		if got := seconds(&Row{Delay: d}); got != want {
			t.Errorf("seconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for key, mut := range map[string]func(*Config){
		"decision_log.queue_size":       func(c *Config) { c.QueueSize = 0 },
		"decision_log.batch_size":       func(c *Config) { c.BatchSize = c.QueueSize + 1 },
		"decision_log.flush_interval":   func(c *Config) { c.FlushInterval = 0 },
		"decision_log.write_timeout":    func(c *Config) { c.WriteTimeout = time.Hour },
		"decision_log.retention":        func(c *Config) { c.Retention = time.Hour },
		"decision_log.partitions_ahead": func(c *Config) { c.PartitionsAhead = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("%s: Validate = %v, want an error naming the key", key, err)
		}
	}
}
