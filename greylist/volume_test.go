package greylist_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/greylist"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// EnvVolume turns on the realistic-volume test; .ci/run sets it.
const EnvVolume = "MXPOLICYD_VOLUME_TEST"

// TestGCMillionTriplets: gc on a PostgreSQL database with a million
// triplets removes exactly what expired, and decisions made while it runs
// never wait for a large part of it: the batches are short transactions.
// How long it takes is logged, not asserted.
func TestGCMillionTriplets(t *testing.T) {
	if os.Getenv(EnvVolume) == "" {
		t.Skip("set " + EnvVolume + "=1 to run the million-triplet gc test (.ci/run does)")
	}
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv(EnvVolume)); err == nil && v > 1 {
		n = v
	}
	ctx := context.Background()
	d := openDB(t, pgtest.New(t))
	now := start.Add(365 * 24 * time.Hour)
	t0 := time.Now()
	// Generated in SQL, not row by row. By i % 10: 0-4 pending past the
	// retry window, 5-7 passed and unseen for max age (removed); 8 pending
	// and 9 passed, recent (kept). Every 10th network has client and pair
	// AWL rows, half of them expired.
	for _, q := range []string{`
INSERT INTO greylist_triplet (client_key, sender, recipient, key_kind, client_net, client_addr,
	raw_sender, first_seen, last_seen, passed_at, attempts, passes)
SELECT 'net:' || set_masklen(net, 24)::cidr, 'sender' || i || '@example.org', 'rcpt' || (i % 5000) || '@example.net',
	'net', set_masklen(net, 24)::cidr, net, 'sender' || i || '@example.org',
	CASE WHEN i % 10 < 5 THEN $1::timestamptz - interval '3 days'
	     WHEN i % 10 < 8 THEN $1::timestamptz - interval '60 days' ELSE $1::timestamptz - interval '1 hour' END,
	CASE WHEN i % 10 < 5 THEN $1::timestamptz - interval '3 days'
	     WHEN i % 10 < 8 THEN $1::timestamptz - interval '40 days' ELSE $1::timestamptz - interval '1 hour' END,
	CASE WHEN i % 10 IN (5, 6, 7, 9) THEN $1::timestamptz - interval '59 days' END,
	1, CASE WHEN i % 10 IN (5, 6, 7, 9) THEN 1 ELSE 0 END
FROM (SELECT i, '10.0.0.7'::inet + (i % 4000000) * 256 AS net FROM generate_series(1, $2::int) AS i) s`, `
INSERT INTO greylist_awl_client (client_net, client_addr, first_seen, last_seen, last_counted, passes)
SELECT set_masklen(net, 24)::cidr, net, $1::timestamptz - interval '90 days',
	CASE WHEN i % 2 = 0 THEN $1::timestamptz - interval '40 days' ELSE $1::timestamptz END, $1::timestamptz - interval '40 days', 5
FROM (SELECT i, '10.0.0.7'::inet + i * 2560 AS net FROM generate_series(1, $2::int / 10) AS i) s`, `
INSERT INTO greylist_awl_pair (client_key, sender_domain, key_kind, client_net, client_addr, first_seen, last_seen)
SELECT 'net:' || set_masklen(net, 24)::cidr, 'example.org', 'net', set_masklen(net, 24)::cidr, net, $1::timestamptz - interval '90 days',
	CASE WHEN i % 2 = 0 THEN $1::timestamptz - interval '40 days' ELSE $1::timestamptz END
FROM (SELECT i, '10.0.0.7'::inet + i * 2560 AS net FROM generate_series(1, $2::int / 10) AS i) s`} {
		if _, err := d.PG.Exec(ctx, q, now, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.PG.Exec(ctx, `ANALYZE greylist_triplet; ANALYZE greylist_awl_client; ANALYZE greylist_awl_pair`); err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d triplets in %s", n, time.Since(t0).Round(time.Millisecond))

	g, err := greylist.New(greylist.DefaultConfig(), greylist.NewStore(d), greylist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	dry, err := g.GC(ctx, now, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc --dry-run: %+v in %s", dry, time.Since(t0).Round(time.Millisecond))
	want := greylist.GCStats{Pending: int64(n / 2), Passed: int64(n * 3 / 10), AWLClients: int64(n / 20), AWLPairs: int64(n / 20)}
	if dry != want {
		t.Fatalf("dry run counted %+v, want %+v", dry, want)
	}

	var elapsed time.Duration
	maxWait, decisions := serveDuring(t, g, now, func() {
		t0 = time.Now()
		got, err := g.GC(ctx, now, false)
		elapsed = time.Since(t0) // a figure, logged: speed is scripts/bench.sh's to measure
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gc: removed %+v (%d rows) in %s", got, got.Total(), elapsed.Round(time.Millisecond))
		if got != want {
			t.Errorf("gc removed %+v, want %+v", got, want)
		}
	})
	t.Logf("%d decisions served during gc, slowest %s", decisions, maxWait.Round(time.Microsecond))
	// The behaviour, not a speed: gc's short batches let decisions through
	// while it runs, so none waits for a large part of the run (as one
	// would behind a single statement's locks).
	if elapsed >= time.Second && maxWait > elapsed/2 {
		t.Errorf("a decision waited %s of gc's %s: gc held it up", maxWait, elapsed)
	}
	var left int64
	if err := d.PG.QueryRow(ctx, `SELECT count(*) FROM greylist_triplet`).Scan(&left); err != nil || left < int64(n/5) {
		t.Fatalf("%d triplets left, %v; want the %d recent ones (and those served)", left, err, n/5)
	}
}

// serveDuring makes decisions in a loop while fn runs and reports the
// slowest one.
func serveDuring(t *testing.T, g *greylist.Checker, now time.Time, fn func()) (time.Duration, int) {
	var (
		wg      sync.WaitGroup
		done    = make(chan struct{})
		maxWait time.Duration
		count   int
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(0); ; i++ {
			select {
			case <-done:
				return
			default:
			}
			t0 := time.Now()
			st := stateFor(benchKeyIP(i), now)
			if _, err := g.Check(context.Background(), st); err != nil {
				t.Error(err)
				return
			}
			if w := time.Since(t0); w > maxWait {
				maxWait = w
			}
			count++
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return maxWait, count
}
