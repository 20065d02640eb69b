package greylist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// fakeFlush answers each request "new" at its own time and records the
// senders of each group it was given.
type fakeFlush struct {
	mu     sync.Mutex
	groups [][]string
	hook   func(ctx context.Context, group []*request) error // optional
}

func (f *fakeFlush) flush(ctx context.Context, group []*request) ([]result, error) {
	f.mu.Lock()
	var senders []string
	for _, r := range group {
		senders = append(senders, r.k.Sender)
	}
	f.groups = append(f.groups, senders)
	f.mu.Unlock()
	if f.hook != nil {
		if err := f.hook(ctx, group); err != nil {
			return nil, err
		}
	}
	res := make([]result, len(group))
	for i, r := range group {
		res[i].o = Outcome{Verdict: VerdictNew, FirstSeen: r.now}
	}
	return res, nil
}

func (f *fakeFlush) sent() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.groups...)
}

// pinnedBatcher sends a group only when it holds rows requests.
func pinnedBatcher(t *testing.T, rows int, f *fakeFlush) *batcher {
	b := newBatcher(BatchOptions{MaxRows: rows, Window: time.Hour, MaxInFlight: 1}, f.flush)
	t.Cleanup(b.close)
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type answer struct {
	o   Outcome
	err error
}

// goDecide starts a decision for sender and returns where its answer goes.
func goDecide(ctx context.Context, b *batcher, sender string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		o, err := b.decide(ctx, time.Unix(0, 0), &Config{}, Key{Sender: sender})
		ch <- answer{o, err}
	}()
	return ch
}

// gatheredCh makes b report each request it gathers; set it before any
// request is made.
func gatheredCh(b *batcher) <-chan int {
	ch := make(chan int, 64)
	b.gathered = func(n int) { ch <- n }
	return ch
}

func TestBatcherCancelledWhileQueuedIsNotSent(t *testing.T) {
	f := &fakeFlush{}
	b := newBatcher(BatchOptions{MaxRows: 2, Window: time.Hour, MaxInFlight: 1}, f.flush)
	t.Cleanup(b.close)
	gathered := gatheredCh(b)
	ctx, cancel := context.WithCancel(testCtx(t))
	a := goDecide(ctx, b, "a")
	<-gathered // a is in the group being gathered
	cancel()
	if got := <-a; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("cancelled while queued: %+v, want %v", got, context.Canceled)
	}
	if got := <-goDecide(testCtx(t), b, "b"); got.err != nil || got.o.Verdict != VerdictNew {
		t.Fatalf("b: %+v", got)
	}
	if got := fmt.Sprint(f.sent()); got != "[[b]]" {
		t.Fatalf("groups sent %s, want [[b]]: a must not be sent", got)
	}
}

// A request that gives up after its group was sent returns its ctx's
// error; the group's context ends once nobody waits, and the answer is
// dropped without blocking the batcher.
func TestBatcherGiveUpAfterSend(t *testing.T) {
	sending := make(chan struct{})
	f := &fakeFlush{hook: func(ctx context.Context, _ []*request) error {
		close(sending)
		<-ctx.Done()
		return ctx.Err()
	}}
	b := pinnedBatcher(t, 1, f)
	ctx, cancel := context.WithCancel(testCtx(t))
	a := goDecide(ctx, b, "a")
	<-sending
	cancel()
	if got := <-a; !errors.Is(got.err, context.Canceled) {
		t.Fatalf("gave up while sent: %+v, want %v", got, context.Canceled)
	}
	f.hook = nil // the next group runs after the slot is free: no race with the hook
	if got := <-goDecide(testCtx(t), b, "b"); got.err != nil {
		t.Fatalf("next group: %v", got.err)
	}
}

func TestBatcherPanicFailsOnlyItsGroup(t *testing.T) {
	var once sync.Once
	f := &fakeFlush{hook: func(context.Context, []*request) error {
		once.Do(func() { panic("driver bug") })
		return nil
	}}
	b := pinnedBatcher(t, 2, f)
	a, c := goDecide(testCtx(t), b, "a"), goDecide(testCtx(t), b, "c")
	for _, ch := range []<-chan answer{a, c} {
		if got := <-ch; got.err == nil || !strings.Contains(got.err.Error(), "panicked") {
			t.Fatalf("group that panicked: %+v, want an error", got)
		}
	}
	d, e := goDecide(testCtx(t), b, "d"), goDecide(testCtx(t), b, "e")
	for _, ch := range []<-chan answer{d, e} {
		if got := <-ch; got.err != nil {
			t.Fatalf("next group: %v", got.err)
		}
	}
}

// A row error fails that request alone and the rest are sent again, at
// most maxResends times.
func TestBatcherRowErrorResends(t *testing.T) {
	f := &fakeFlush{hook: func(_ context.Context, group []*request) error {
		for i, r := range group {
			if strings.HasPrefix(r.k.Sender, "bad") {
				return &rowError{row: i, err: errors.New("check violation")}
			}
		}
		return nil
	}}
	b := pinnedBatcher(t, 5, f)
	senders := []string{"a", "bad1", "b", "bad2", "c"}
	answers := map[string]<-chan answer{}
	for _, s := range senders {
		answers[s] = goDecide(testCtx(t), b, s)
	}
	for _, s := range senders {
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
	senders = []string{"bad1", "bad2", "bad3", "a", "b"}
	for _, s := range senders {
		answers[s] = goDecide(testCtx(t), b, s)
	}
	for _, s := range senders {
		if got := <-answers[s]; got.err == nil {
			t.Errorf("%s: %+v, want the group's error after %d resends", s, got, maxResends)
		}
	}
	if n := len(f.sent()); n != 1+maxResends {
		t.Errorf("sent %d transactions, want %d", n, 1+maxResends)
	}
}

func TestBatcherMaxRows(t *testing.T) {
	f := &fakeFlush{}
	b := pinnedBatcher(t, 4, f)
	var chs []<-chan answer
	for i := range 8 {
		chs = append(chs, goDecide(testCtx(t), b, fmt.Sprint(i)))
	}
	for _, ch := range chs {
		if got := <-ch; got.err != nil {
			t.Fatal(got.err)
		}
	}
	if st := b.stats(); st != (BatchStats{Transactions: 2, Rows: 8}) {
		t.Fatalf("stats %+v, want 2 transactions of 4", st)
	}
}

// Close sends the group being gathered, answers it, and refuses the rest.
func TestBatcherClose(t *testing.T) {
	f := &fakeFlush{}
	b := newBatcher(BatchOptions{MaxRows: 4, Window: time.Hour, MaxInFlight: 1}, f.flush)
	gathered := gatheredCh(b)
	a, c := goDecide(testCtx(t), b, "a"), goDecide(testCtx(t), b, "c")
	<-gathered
	<-gathered
	b.close()
	for _, ch := range []<-chan answer{a, c} {
		if got := <-ch; got.err != nil {
			t.Fatalf("queued at Close: %v", got.err)
		}
	}
	if _, err := b.decide(testCtx(t), time.Unix(0, 0), &Config{}, Key{}); !errors.Is(err, errClosed) {
		t.Fatalf("after Close: %v, want %v", err, errClosed)
	}
	b.close() // twice is fine
}

func TestBatchOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		in, want BatchOptions
	}{
		{BatchOptions{}, BatchOptions{MaxRows: 64, Window: time.Millisecond, MaxInFlight: 4}},
		{BatchOptions{MaxRows: 8, Window: -1, MaxInFlight: 2}, BatchOptions{MaxRows: 8, Window: 0, MaxInFlight: 2}},
		{BatchOptions{Window: time.Second}, BatchOptions{MaxRows: 64, Window: time.Second, MaxInFlight: 4}},
	} {
		if got := tc.in.withDefaults(time.Millisecond, 4); got != tc.want {
			t.Errorf("%+v: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// retryable is an error pgx raised before writing anything.
type retryable struct{}

func (retryable) Error() string     { return "dial: connection refused" }
func (retryable) SafeToRetry() bool { return true }

func TestPGResendAndRowErrors(t *testing.T) {
	for _, tc := range []struct {
		err         error
		resend, row bool
	}{
		{retryable{}, true, false},
		{&pgconn.PgError{Code: "40P01"}, true, false}, // deadlock victim: rolled back
		{&pgconn.PgError{Code: "40001"}, true, false},
		{&pgconn.PgError{Code: "23514"}, false, true}, // check violation: that row's values
		{&pgconn.PgError{Code: "22021"}, false, true}, // invalid UTF-8
		{&pgconn.PgError{Code: "57P01"}, false, false},
		{io.ErrUnexpectedEOF, false, false}, // lost after sending: may have committed
	} {
		var re *rowError
		row := errors.As(pgStatementError(tc.err, 3), &re) && re.row == 3
		if got := pgResend(tc.err); got != tc.resend || row != tc.row {
			t.Errorf("%v: resend %t, row error %t; want %t, %t", tc.err, got, row, tc.resend, tc.row)
		}
	}
}

func TestLiteRowErrors(t *testing.T) {
	d, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := testCtx(t)
	if _, err := d.ExecContext(ctx, "CREATE TABLE t (k TEXT NOT NULL CHECK (k IN ('net', 'spf')))"); err != nil {
		t.Fatal(err)
	}
	_, check := d.ExecContext(ctx, "INSERT INTO t VALUES ('bogus')")
	_, syntax := d.ExecContext(ctx, "INSERT INTO nowhere VALUES (1)")
	var re *rowError
	if !errors.As(liteStatementError(check, 2), &re) || re.row != 2 {
		t.Errorf("check violation %v: not a row error", check)
	}
	if errors.As(liteStatementError(syntax, 2), &re) {
		t.Errorf("missing table %v: a row error", syntax)
	}
}

// Each SQLite statement binds only the parameters it uses, renumbered in
// order, and takes them from the right place in liteDecideArgs.
func TestCompactParams(t *testing.T) {
	q := compactParams("a = ?12 AND b = ?3 OR c = ?12 AND d = ?1")
	if want := "a = ?3 AND b = ?2 OR c = ?3 AND d = ?1"; q.text != want {
		t.Errorf("text %q, want %q", q.text, want)
	}
	if got := fmt.Sprint(q.args); got != "[0 2 11]" {
		t.Errorf("args %s, want [0 2 11]", got)
	}
	if got := fmt.Sprint(liteQueries[stAWLClient].args); got != "[4 8 11 13]" {
		t.Errorf("client lookup binds %s, want ?5 ?9 ?12 ?14: [4 8 11 13]", got)
	}
}
