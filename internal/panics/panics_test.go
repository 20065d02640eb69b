package panics

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestCall(t *testing.T) {
	want := errors.New("plain")
	if err := Call(func() error { return want }); err != want {
		t.Errorf("Call returned %v, want f's error", err)
	}
	if err := Call(func() error { return nil }); err != nil {
		t.Errorf("Call returned %v, want nil", err)
	}
	err := Call(func() error { panic("boom") })
	var pe *Error
	if !errors.As(err, &pe) || pe.Value != "boom" || err.Error() != "panic: boom" {
		t.Fatalf("Call of a panicking f = %v, want *Error with the value", err)
	}
	if !strings.Contains(string(pe.Stack), "panics.TestCall") {
		t.Errorf("stack does not name the panicking function:\n%s", pe.Stack)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Error("failed", "err", err)
	if !strings.Contains(buf.String(), "err.panic=boom") || !strings.Contains(buf.String(), "err.stack=") {
		t.Errorf("logged %q, want the value and the stack", buf.String())
	}
}
