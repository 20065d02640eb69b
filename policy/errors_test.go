package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

type netTimeout struct{}

func (netTimeout) Error() string { return "i/o timeout" }
func (netTimeout) Timeout() bool { return true }

func TestKindOf(t *testing.T) {
	down := errors.New("connection refused")
	for _, tt := range []struct {
		err  error
		want ErrorKind
	}{
		{fmt.Errorf("check: %w", context.DeadlineExceeded), ErrorTimeout},
		{fmt.Errorf("dns: %w", netTimeout{}), ErrorTimeout},
		{Temporary(fmt.Errorf("db: %w", context.DeadlineExceeded)), ErrorTimeout},
		{Temporary(down), ErrorTemporary},
		{fmt.Errorf("greylist: %w", Temporary(down)), ErrorTemporary},
		{down, ErrorPermanent},
		{errors.New("policy: check x panicked"), ErrorPermanent},
	} {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if err := Temporary(down); err.Error() != down.Error() || !errors.Is(err, down) {
		t.Errorf("Temporary changed the error: %v", err)
	}
	if Temporary(nil) != nil {
		t.Error("Temporary(nil) is not nil")
	}
}

// Keys are told apart by identity: two keys of one name never share a
// value, and a nil message holds nothing.
func TestMessageKeys(t *testing.T) {
	a, b := NewMessageKey[string]("x"), NewMessageKey[int]("x")
	m := NewMessage("i")
	a.Set(m, "v")
	if _, ok := b.Get(m); ok {
		t.Fatal("a key read another key's value")
	}
	if v, ok := a.Get(m); !ok || v != "v" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	a.Set(nil, "ignored")
	if _, ok := a.Get(nil); ok {
		t.Fatal("a nil message holds a value")
	}
}
