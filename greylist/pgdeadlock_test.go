package greylist

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// Groups in flight at once, from one daemon or several, never deadlock:
// a deadlock costs every decision waiting on it the server's
// deadlock_timeout (1 s by default) before one group is rolled back and
// sent again, and a burst of them runs greylisting past its timeout, so
// that it pauses and lets mail through ungreylisted. A newsletter does
// this: one client network, one sender domain, many recipients, on many
// smtpd processes at once. Three daemons' batched stores decide such a
// burst, with retries and passes that feed the auto-whitelists, on a
// database whose deadlock_timeout is short so the test is quick; the
// server's deadlock errors are counted where the store sends a group
// again.
func TestPGBatchGroupsDoNotDeadlock(t *testing.T) {
	dsn := pgtest.New(t)
	admin := dbtest.OpenDSN(t, dsn)
	ctx := dbtest.Context(t)
	var name string
	if err := admin.PG.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PG.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET deadlock_timeout = '20ms'"); err != nil {
		t.Fatal(err)
	}
	var deadlocks, resends atomic.Int64
	var stores []*PGBatchStore
	for range 3 {
		s := NewPGBatchStore(dbtest.OpenDSN(t, dsn).PG, BatchOptions{})
		s.resent = func(err error) {
			resends.Add(1)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
				deadlocks.Add(1)
			}
		}
		t.Cleanup(s.Close)
		stores = append(stores, s)
	}
	cfg := DefaultConfig()
	cfg.AWLClientPasses, cfg.AWLCountInterval = 2, time.Minute
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			s := stores[g%len(stores)]
			for i := range 60 {
				addr := netip.AddrFrom4([4]byte{198, 51, byte(100 + rng.IntN(3)), byte(1 + rng.IntN(4))})
				sender := fmt.Sprintf("news%d@list%d.example", rng.IntN(2), rng.IntN(2))
				k := cfg.KeyFor(addr, sender, fmt.Sprintf("user%d@local.test", rng.IntN(12)), "")
				now := t0.Add(time.Duration(i) * cfg.Delay / 4)
				if _, err := s.Decide(ctx, now, &cfg, k); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := deadlocks.Load(); n > 0 {
		t.Errorf("%d groups were deadlock victims (%d sent again in all)", n, resends.Load())
	}
}

// A group locks each client key and client network once, ascending: a
// network key is its network's, so it costs one lock, and a pool key
// (SPF) one more.
func TestPGLockKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolAware = true
	a, b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.77") // one /24
	group := []*request{
		{Arg: decideArg{k: cfg.KeyFor(a, "x@one.example", "r1@local.test", "")}},
		{Arg: decideArg{k: cfg.KeyFor(b, "y@two.example", "r2@local.test", "")}},
		{Arg: decideArg{k: cfg.KeyFor(b, "z@pool.example", "r3@local.test", "pool.example")}},
	}
	got := pgLockKeys(group)
	want := []int64{lockKey([]byte("net:192.0.2.0/24")), lockKey([]byte("spf:pool.example"))}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pgLockKeys = %v, want %v (the network's and the pool's, ascending)", got, want)
	}
}
