package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/panics"
)

// fakeFlush answers each call with its argument and records the
// arguments of each group it was given.
type fakeFlush struct {
	mu     sync.Mutex
	groups [][]string
	hook   func(ctx context.Context, group []*Call[string, string]) error // optional
}

func (f *fakeFlush) flush(ctx context.Context, group []*Call[string, string]) ([]Result[string], error) {
	f.mu.Lock()
	var args []string
	for _, c := range group {
		args = append(args, c.Arg)
	}
	f.groups = append(f.groups, args)
	f.mu.Unlock()
	if f.hook != nil {
		if err := f.hook(ctx, group); err != nil {
			return nil, err
		}
	}
	res := make([]Result[string], len(group))
	for i, c := range group {
		res[i].Val = "done " + c.Arg
	}
	return res, nil
}

func (f *fakeFlush) sent() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.groups...)
}

// pinned sends a group only when it holds rows calls.
func pinned(t *testing.T, rows int, f *fakeFlush) *Batcher[string, string] {
	b := New(Options{MaxRows: rows, Window: time.Hour, MaxInFlight: 1}, f.flush)
	t.Cleanup(b.Close)
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type answer struct {
	val string
	err error
}

// goDo starts a call with arg and returns where its answer goes.
func goDo(ctx context.Context, b *Batcher[string, string], arg string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		v, err := b.Do(ctx, arg)
		ch <- answer{v, err}
	}()
	return ch
}

// gatheredCh makes b report each call it gathers; set it before any
// call is made.
func gatheredCh(b *Batcher[string, string]) <-chan int {
	ch := make(chan int, 64)
	b.gathered = func(n int) { ch <- n }
	return ch
}

func TestCancelledWhileQueuedIsNotSent(t *testing.T) {
	f := &fakeFlush{}
	b := New(Options{MaxRows: 2, Window: time.Hour, MaxInFlight: 1}, f.flush)
	t.Cleanup(b.Close)
	gathered := gatheredCh(b)
	ctx, cancel := context.WithCancel(testCtx(t))
	a := goDo(ctx, b, "a")
	<-gathered // a is in the group being gathered
	cancel()
	if got := <-a; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("cancelled while queued: %+v, want %v", got, context.Canceled)
	}
	if got := <-goDo(testCtx(t), b, "b"); got.err != nil || got.val != "done b" {
		t.Fatalf("b: %+v", got)
	}
	if got := fmt.Sprint(f.sent()); got != "[[b]]" {
		t.Fatalf("groups sent %s, want [[b]]: a must not be sent", got)
	}
}

// A call that gives up after its group was sent returns its ctx's error;
// the group's context ends once nobody waits, and the answer is dropped
// without blocking the batcher.
func TestGiveUpAfterSend(t *testing.T) {
	sending := make(chan struct{})
	f := &fakeFlush{hook: func(ctx context.Context, _ []*Call[string, string]) error {
		close(sending)
		<-ctx.Done()
		return ctx.Err()
	}}
	b := pinned(t, 1, f)
	ctx, cancel := context.WithCancel(testCtx(t))
	a := goDo(ctx, b, "a")
	<-sending
	cancel()
	if got := <-a; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("gave up while sent: %+v, want %v", got, context.Canceled)
	}
	f.hook = nil // the next group runs after the slot is free: no race with the hook
	if got := <-goDo(testCtx(t), b, "b"); got.err != nil {
		t.Fatalf("next group: %v", got.err)
	}
}

func TestPanicFailsOnlyItsGroup(t *testing.T) {
	var once sync.Once
	f := &fakeFlush{hook: func(context.Context, []*Call[string, string]) error {
		once.Do(func() { panic("driver bug") })
		return nil
	}}
	b := pinned(t, 2, f)
	a, c := goDo(testCtx(t), b, "a"), goDo(testCtx(t), b, "c")
	for _, ch := range []<-chan answer{a, c} {
		got := <-ch
		if pe := (*panics.Error)(nil); got.err == nil || !strings.Contains(got.err.Error(), "panicked") ||
			!errors.As(got.err, &pe) || !strings.Contains(string(pe.Stack), "TestPanicFailsOnlyItsGroup") {
			t.Fatalf("group that panicked: %+v, want an error carrying the panic's stack", got)
		}
	}
	d, e := goDo(testCtx(t), b, "d"), goDo(testCtx(t), b, "e")
	for _, ch := range []<-chan answer{d, e} {
		if got := <-ch; got.err != nil {
			t.Fatalf("next group: %v", got.err)
		}
	}
}

// A row error fails that call alone and the rest are sent again, at most
// maxResends times.
func TestRowErrorResends(t *testing.T) {
	f := &fakeFlush{hook: func(_ context.Context, group []*Call[string, string]) error {
		for i, c := range group {
			if strings.HasPrefix(c.Arg, "bad") {
				return &RowError{Row: i, Err: errors.New("check violation")}
			}
		}
		return nil
	}}
	b := pinned(t, 5, f)
	args := []string{"a", "bad1", "b", "bad2", "c"}
	answers := map[string]<-chan answer{}
	for _, s := range args {
		answers[s] = goDo(testCtx(t), b, s)
	}
	for _, s := range args {
		got := <-answers[s]
		if bad := strings.HasPrefix(s, "bad"); bad != (got.err != nil) {
			t.Errorf("%s: %+v", s, got)
		}
	}
	if n := len(f.sent()); n != 3 {
		t.Errorf("sent %d transactions, want 3: the group, then twice without a failing row", n)
	}

	// More failing rows than resends: the rest share the last error.
	f.groups = nil
	args = []string{"bad1", "bad2", "bad3", "a", "b"}
	for _, s := range args {
		answers[s] = goDo(testCtx(t), b, s)
	}
	for _, s := range args {
		if got := <-answers[s]; got.err == nil {
			t.Errorf("%s: %+v, want the group's error after %d resends", s, got, maxResends)
		}
	}
	if n := len(f.sent()); n != 1+maxResends {
		t.Errorf("sent %d transactions, want %d", n, 1+maxResends)
	}
}

func TestMaxRows(t *testing.T) {
	f := &fakeFlush{}
	b := pinned(t, 4, f)
	var chs []<-chan answer
	for i := range 8 {
		chs = append(chs, goDo(testCtx(t), b, fmt.Sprint(i)))
	}
	for _, ch := range chs {
		if got := <-ch; got.err != nil {
			t.Fatal(got.err)
		}
	}
	if st := b.Stats(); st != (Stats{Transactions: 2, Rows: 8}) {
		t.Fatalf("stats %+v, want 2 transactions of 4", st)
	}
}

// Close sends the group being gathered, answers it, and refuses the rest.
func TestClose(t *testing.T) {
	f := &fakeFlush{}
	b := New(Options{MaxRows: 4, Window: time.Hour, MaxInFlight: 1}, f.flush)
	gathered := gatheredCh(b)
	a, c := goDo(testCtx(t), b, "a"), goDo(testCtx(t), b, "c")
	<-gathered
	<-gathered
	b.Close()
	for _, ch := range []<-chan answer{a, c} {
		if got := <-ch; got.err != nil {
			t.Fatalf("queued at Close: %v", got.err)
		}
	}
	if _, err := b.Do(testCtx(t), "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want %v", err, ErrClosed)
	}
	b.Close() // twice is fine
}
