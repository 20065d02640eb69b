package policy

import (
	"fmt"
	"testing"
	"time"
)

// The messages of evicted connections are kept at most maxOrphans, the
// oldest going first, for at most the age take is given, and each is
// taken once.
func TestOrphans(t *testing.T) {
	var o orphans
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if m := o.take("a", t0, time.Minute); m != nil {
		t.Fatal("took a message from none")
	}
	for i := range maxOrphans + 1 {
		o.put(NewMessage(fmt.Sprint(i)), t0.Add(time.Duration(i)*time.Millisecond))
	}
	o.put(nil, t0)
	o.put(NewMessage(""), t0)
	if n := int(o.n.Load()); n != maxOrphans {
		t.Fatalf("%d kept, want %d", n, maxOrphans)
	}
	now := t0.Add(time.Second)
	if m := o.take("0", now, time.Minute); m != nil {
		t.Error("the oldest was kept past maxOrphans")
	}
	if m := o.take("1", now, time.Minute); m == nil || m.Instance != "1" {
		t.Errorf("take(1) = %v", m)
	}
	if m := o.take("1", now, time.Minute); m != nil {
		t.Error("a message taken twice")
	}
	if m := o.take("2", t0.Add(2*time.Minute), time.Minute); m != nil {
		t.Error("a message taken past its age")
	}
	if n := o.n.Load(); n != 0 {
		t.Errorf("%d kept after every one aged out", n)
	}
}
