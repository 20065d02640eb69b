package greylist

import (
	"strings"
	"testing"
	"time"
)

// The stores keep seconds (SQLite) and microseconds (PostgreSQL): a
// duration with a fraction of a second would cut off a second apart on
// the two, so it is refused.
func TestConfigDurationsWholeSeconds(t *testing.T) {
	for _, set := range []func(*Config){
		func(c *Config) { c.Delay = 90*time.Second + 500*time.Millisecond },
		func(c *Config) { c.RetryWindow = 2*time.Minute + 500*time.Millisecond },
		func(c *Config) { c.MaxAge = 840*time.Hour + time.Millisecond },
		func(c *Config) { c.AWLCountInterval = time.Hour + 250*time.Millisecond },
	} {
		c := DefaultConfig()
		set(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "whole seconds") {
			t.Errorf("%+v: %v, want refused as not whole seconds", c, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
