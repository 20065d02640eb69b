package greylist_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// The decision path on each store; numbers and the command are in
// BENCHMARKS.md. The /new cases are one database round trip per request
// (a new triplet); /known-db a passed triplet with the cache off; /cached
// a passed triplet answered from memory.

func benchStores(b *testing.B) map[string]func(b *testing.B) greylist.Store {
	return map[string]func(b *testing.B) greylist.Store{
		"postgres": func(b *testing.B) greylist.Store { return greylist.NewStore(openDB(b, pgtest.New(b))) },
		"sqlite": func(b *testing.B) greylist.Store {
			return greylist.NewStore(openDB(b, filepath.Join(b.TempDir(), "g.db")))
		},
	}
}

func benchKey(c *greylist.Config, i int64) greylist.Key {
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return c.KeyFor(ip, fmt.Sprintf("sender%d@example.org", i), "bob@example.net", "")
}

func BenchmarkDecide(b *testing.B) {
	for name, open := range benchStores(b) {
		cfg := greylist.DefaultConfig()
		b.Run(name+"/new", func(b *testing.B) {
			b.SetParallelism(4) // several smtpd processes ask at once
			decideNew(b, open(b), &cfg)
		})
		b.Run(name+"/known-db", func(b *testing.B) {
			s := open(b)
			k := benchKey(&cfg, 1)
			ctx := context.Background()
			if _, err := s.Decide(ctx, start, &cfg, k); err != nil {
				b.Fatal(err)
			}
			later := start.Add(cfg.Delay)
			b.ResetTimer()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Decide(ctx, later, &cfg, k); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkDecideBatched is new triplets through the batched store from
// 64 concurrent callers, as the daemon runs it (NewBatchStore, default
// options). cpu-us/op is the process's user and system time per decision
// (getrusage), steadier than the time per decision on a shared machine.
func BenchmarkDecideBatched(b *testing.B) {
	for name, dsn := range map[string]func(b *testing.B) string{
		"postgres": func(b *testing.B) string { return pgtest.New(b) },
		"sqlite":   func(b *testing.B) string { return filepath.Join(b.TempDir(), "g.db") },
	} {
		cfg := greylist.DefaultConfig()
		b.Run(name+"/new", func(b *testing.B) {
			s, stop := greylist.NewBatchStore(openDB(b, dsn(b)), greylist.BatchOptions{})
			defer stop()
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			before := cpuTime()
			decideNew(b, s, &cfg)
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// decideNew decides b.N new triplets on s from b's parallel callers.
func decideNew(b *testing.B, s greylist.Store, cfg *greylist.Config) {
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.Decide(ctx, start, cfg, benchKey(cfg, n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkCheckCached is a known-passing triplet through the whole check:
// key, normalization, cache; no database.
func BenchmarkCheckCached(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			g, err := greylist.New(greylist.DefaultConfig(), open(b), greylist.Options{})
			if err != nil {
				b.Fatal(err)
			}
			req := request("192.0.2.10", "bounce-mc.us5_109548965.1234567-6fc5f2a4ce@mail210.atl221.mcdlv.net", "bob@example.net")
			ctx := context.Background()
			for _, at := range []time.Duration{0, 5 * time.Minute} {
				if _, err := g.Check(ctx, &policy.State{Req: req, Msg: policy.NewMessage("x"), Now: start.Add(at)}); err != nil {
					b.Fatal(err)
				}
			}
			now := start.Add(6 * time.Minute)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := g.Check(ctx, &policy.State{Req: req, Msg: policy.NewMessage("x"), Now: now})
					if err != nil || !res.Action.IsDunno() {
						b.Error(res, err)
						return
					}
				}
			})
		})
	}
}

func benchKeyIP(i int64) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

func stateFor(ip string, now time.Time) *policy.State {
	return &policy.State{Req: request(ip, "sender"+ip+"@example.org", "rcpt@example.net"),
		Msg: policy.NewMessage("x"), Now: now}
}
