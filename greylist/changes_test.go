package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// The change counter's poll survives what its read may do: fail while the
// database is down (quietly: the connector says so), fail otherwise
// (one warning per outage, one line when it works again), panic in the
// driver (a failure like the others), hang (bounded by pollTimeout).
func TestChangesPollFailures(t *testing.T) {
	var next func(ctx context.Context) (int64, error)
	logs := &logtest.Buffer{}
	ch := &Changes{
		version: func(ctx context.Context) (int64, error) { return next(ctx) },
		log:     slog.New(slog.NewTextHandler(logs, nil)),
		last:    -1,
	}
	ctx := context.Background()
	poll := func(f func(ctx context.Context) (int64, error)) { next = f; ch.Poll(ctx) }

	poll(func(context.Context) (int64, error) { return 0, fmt.Errorf("read: %w", db.ErrUnavailable) })
	poll(func(context.Context) (int64, error) { return 3, nil })
	if ch.gen.Load() != 1 {
		t.Fatalf("first read: %d changes, want 1", ch.gen.Load())
	}
	poll(func(context.Context) (int64, error) { panic("driver bug") })
	poll(func(context.Context) (int64, error) { return 0, errors.New("permission denied") })
	poll(func(ctx context.Context) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a poll without a deadline")
		}
		return 4, nil
	})
	if ch.gen.Load() != 2 {
		t.Errorf("after the counter moved: %d changes, want 2", ch.gen.Load())
	}
	out := logs.String()
	for s, n := range map[string]int{
		"level=WARN msg=\"greylist: reading the change counter failed": 1,
		"driver bug":                       1,
		"the change counter is read again": 1,
		"level=WARN msg=\"greylist: change counter not read": 0,
	} {
		if got := strings.Count(out, s); got != n {
			t.Errorf("log has %q %d times, want %d:\n%s", s, got, n, out)
		}
	}
}

// inFlightStore answers verdict; with gate set, Decide says it has read
// the row (entered) and answers only when released: a decision in flight.
type inFlightStore struct {
	verdict atomic.Int64
	gate    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *inFlightStore) Decide(_ context.Context, now time.Time, _ *Config, _ Key) (Outcome, error) {
	v := Verdict(s.verdict.Load())
	if s.gate.Load() {
		s.entered <- struct{}{}
		<-s.release
	}
	return Outcome{Verdict: v, FirstSeen: now.Truncate(time.Second)}, nil
}

func (s *inFlightStore) GC(context.Context, time.Time, *Config, bool) (GCStats, error) {
	return GCStats{}, nil
}

// A pass the store read before `greylist forget` committed, answered after
// this daemon's poll saw the forget, is not cached: the forgotten triplet
// is greylisted again at once, not passed from memory for cache_refresh.
// The decision's time is the database server's (policy.Options.ClockOffset),
// so the guard must not compare it with this host's clock: offsets both
// ways.
func TestForgetDuringDecisionIsNotCached(t *testing.T) {
	for _, offset := range []time.Duration{0, 5 * time.Second, -5 * time.Second} {
		t.Run(offset.String(), func(t *testing.T) {
			ctx := context.Background()
			cfg := DefaultConfig()
			cfg.AWLPair, cfg.AWLClientPasses, cfg.Hostname = false, 0, "mx"
			var version atomic.Int64
			ch := &Changes{version: func(context.Context) (int64, error) { return version.Load(), nil },
				log: slog.New(slog.DiscardHandler), last: -1}
			ch.Poll(ctx)
			s := &inFlightStore{entered: make(chan struct{}), release: make(chan struct{})}
			s.verdict.Store(int64(VerdictKnown))
			g, err := New(cfg, s, Options{})
			if err != nil {
				t.Fatal(err)
			}
			g.FollowChanges(ch)
			req := &policy.Request{Request: "smtpd_access_policy", ProtocolState: "RCPT",
				ClientAddress: netip.MustParseAddr("192.0.2.10"), Sender: "alice@example.org",
				Recipient: "bob@example.net", Instance: "i1"}
			check := func() policy.Result {
				st := &policy.State{Req: req, Msg: policy.NewMessage(req.Instance), Now: time.Now().Add(offset)}
				res, err := g.Check(ctx, st)
				if err != nil {
					t.Error(err)
				}
				return res
			}
			s.gate.Store(true)
			done := make(chan policy.Result)
			go func() { done <- check() }()
			<-s.entered // the store has read the triplet as passing
			version.Add(1)
			ch.Poll(ctx) // the forget commits, and the poll sees it
			s.verdict.Store(int64(VerdictNew))
			s.gate.Store(false)
			close(s.release)
			if res := <-done; !res.Action.IsDunno() {
				t.Fatalf("the decision in flight: %+v, want its pass", res)
			}
			if res := check(); res.Action.Verb != policy.DeferIfPermit {
				t.Fatalf("after the forget was seen: %s (%s), want a deferral", res.Action, res.Reason)
			}
		})
	}
}
