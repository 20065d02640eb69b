package decisionlog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/dbtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// counter is an Observer that also reports each written batch on a
// channel, so tests wait for the writer instead of sleeping.
type counter struct {
	written, dropped atomic.Int64
	batches          chan int
}

func newCounter() *counter { return &counter{batches: make(chan int, 100)} }

func (c *counter) LogRowsWritten(n int) {
	c.written.Add(int64(n))
	c.batches <- n
}

func (c *counter) LogRowsDropped(n int) { c.dropped.Add(int64(n)) }

func (c *counter) waitBatch(t *testing.T) int {
	t.Helper()
	select {
	case n := <-c.batches:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no batch written within 10s")
		return 0
	}
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func decision(i int) *policy.Decision {
	return &policy.Decision{
		Time: t0.Add(time.Duration(i) * time.Second),
		Req: &policy.Request{
			ClientAddress: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i%250+1)),
			ClientName:    "mx.example.net", HeloName: "mx.example.net",
			Sender: fmt.Sprintf("s%d@example.net", i), Recipient: "rcpt@example.org",
			Instance: fmt.Sprintf("inst%d", i), QueueID: "4ABCD",
		},
		Check:    "greylist",
		Action:   policy.Action{Verb: policy.DeferIfPermit, Text: "4.2.0 Greylisted"},
		Reason:   "new triplet",
		Duration: 1500 * time.Microsecond,
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.BatchSize, c.QueueSize = 3, 100
	return c
}

func countRows(t *testing.T, d *db.DB) int {
	t.Helper()
	ctx := dbtest.Context(t)
	var n int
	var err error
	if d.IsPostgres() {
		err = d.PG.QueryRow(ctx, "SELECT count(*) FROM decisions").Scan(&n)
	} else {
		err = d.SQL.QueryRowContext(ctx, "SELECT count(*) FROM decisions").Scan(&n)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriterBatchesAndFlushes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		obs, tick := newCounter(), make(chan time.Time)
		w := New(d, testConfig(), Options{Host: "mx1", Observer: obs, Tick: tick,
			Now: func() time.Time { return t0 }})
		for i := range 3 { // a full batch is written without a tick
			w.Record(decision(i))
		}
		if n := obs.waitBatch(t); n != 3 || countRows(t, d) != 3 {
			t.Fatalf("full batch: wrote %d, table has %d rows; want 3", n, countRows(t, d))
		}
		w.Record(decision(3)) // a partial batch waits for the tick
		select {
		case n := <-obs.batches:
			t.Fatalf("a partial batch of %d rows was written without a tick", n)
		case <-time.After(100 * time.Millisecond): // bounds the wait: a good writer never fails here
		}
		tick <- t0 // taken by the writer's loop: the tick it waited for
		if n := obs.waitBatch(t); n != 1 {
			t.Fatalf("tick wrote %d rows, want 1", n)
		}
		for i := 4; i < 6; i++ {
			w.Record(decision(i))
		}
		if err := w.Flush(ctx); err != nil || countRows(t, d) != 6 {
			t.Fatalf("after Flush: %d rows, err %v; want 6", countRows(t, d), err)
		}
		w.Record(decision(6))
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		w.Record(decision(7)) // after Close: dropped, counted, no panic
		st := w.Stats()
		if countRows(t, d) != 7 || st.Written != 7 || st.QueueFull != 1 || obs.written.Load() != 7 || obs.dropped.Load() != 1 {
			t.Fatalf("after Close: %d rows, stats %+v, observer %d/%d", countRows(t, d), st,
				obs.written.Load(), obs.dropped.Load())
		}
	})
}

// A row must come back as it went in, on both stores.
func TestInsertRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		dec := decision(1)
		dec.Observe, dec.Would, dec.Action = true, dec.Action, policy.DunnoAction
		dec.Delay = 301400 * time.Millisecond
		dec.Errors = []policy.CheckError{{Check: "dnsbl"}, {Check: "spf"}}
		dec.Facts.Whitelist = "client 192.0.2.0/24"
		if err := Insert(ctx, d, []Row{FromDecision(dec, "mx1")}); err != nil {
			t.Fatal(err)
		}
		q := `SELECT client, host, action, would_action, verb, delay_seconds, duration_us,
			observe, whitelist, errors, sender FROM decisions`
		if d.IsPostgres() {
			q = "SELECT host(client)" + q[len("SELECT client"):]
		}
		var got [11]any
		ptrs := make([]any, len(got))
		for i := range got {
			ptrs[i] = &got[i]
		}
		var err error
		if d.IsPostgres() {
			err = d.PG.QueryRow(ctx, q).Scan(ptrs...)
		} else {
			err = d.SQL.QueryRowContext(ctx, q).Scan(ptrs...)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"192.0.2.2", "mx1", "DUNNO", "DEFER_IF_PERMIT 4.2.0 Greylisted", "DEFER",
			"301", "1500", "true", "client 192.0.2.0/24", "dnsbl,spf", "s1@example.net"}
		for i, w := range want {
			g := fmt.Sprint(got[i])
			if i == 7 && g == "1" { // SQLite booleans are 0/1
				g = "true"
			}
			if g != w {
				t.Errorf("column %d = %q, want %q", i, g, w)
			}
		}
	})
}

// Every row of a batch is stored with its own values, whatever the batch's
// size (SQLite writes it as multi-row INSERTs of several sizes), and a
// batch with one bad row stores nothing.
func TestInsertSizes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		total := 0
		for _, n := range []int{1, 7, sqliteTxRows, 2*sqliteTxRows + 45} {
			rows := make([]Row, n)
			for i := range rows {
				rows[i] = FromDecision(decision(total+i), "mx1")
			}
			if err := Insert(ctx, d, rows); err != nil {
				t.Fatalf("%d rows: %v", n, err)
			}
			total += n
		}
		q := "SELECT count(*), count(DISTINCT instance) FROM decisions WHERE instance = 'inst' || (time - $1) AND sender = 's' || (time - $1) || '@example.net'"
		var same, distinct int
		var err error
		if d.IsPostgres() {
			q = strings.ReplaceAll(q, "(time - $1)", "(extract(epoch FROM time)::bigint - $1)")
			err = d.PG.QueryRow(ctx, q, t0.Unix()).Scan(&same, &distinct)
		} else {
			err = d.SQL.QueryRowContext(ctx, strings.ReplaceAll(q, "$1", "?1"), t0.Unix()).Scan(&same, &distinct)
		}
		if err != nil || same != total || distinct != total {
			t.Fatalf("%d rows match their own values, %d distinct, err %v; want %d", same, distinct, err, total)
		}
		bad := make([]Row, sqliteTxRows+3)
		for i := range bad {
			bad[i] = FromDecision(decision(total+i), "mx1")
		}
		bad[len(bad)-2].Verb = "BOGUS"
		if err := Insert(ctx, d, bad); err == nil {
			t.Fatal("a batch with a bad verb was stored")
		}
		if n := countRows(t, d); n != total {
			t.Errorf("%d rows after the failed batch, want %d", n, total)
		}
	})
}

// SQLite's INSERT of a batch builds no index while it runs: a CHECK
// written as IN over more than two values made it fill an ephemeral
// index for every row (migrations/sqlite/0007_decisions_verb_check.sql),
// about 5% of the insert's cost. EXPLAIN lists the statement's program.
func TestSQLiteInsertBuildsNoIndexPerRow(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	q := sqliteInserts[2]
	args := make([]any, strings.Count(q, "?"))
	rows, err := d.SQL.QueryContext(ctx, "EXPLAIN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var addr, p1, p2, p3 int
		var op string
		var p4, p5, comment sql.NullString
		if err := rows.Scan(&addr, &op, &p1, &p2, &p3, &p4, &p5, &comment); err != nil {
			t.Fatal(err)
		}
		if op == "OpenEphemeral" {
			t.Errorf("opcode %d: %s %v: the insert builds a temporary index", addr, op, p4.String)
		}
		n++
	}
	if err := rows.Err(); err != nil || n == 0 {
		t.Fatalf("EXPLAIN: %d opcodes, %v", n, err)
	}
}

// holdWrites blocks every write to the decisions table until release is
// called: on SQLite by holding the store's only connection in a
// transaction, on PostgreSQL by an exclusive lock on the table.
func holdWrites(t *testing.T, d *db.DB) (release func()) {
	t.Helper()
	ctx := dbtest.Context(t)
	if !d.IsPostgres() {
		tx, err := d.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback() }
	}
	tx, err := d.PG.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback(context.Background()) }
}

// With the database blocked, Record still returns at once and the rows
// beyond the queue are dropped and counted, never queued without bound.
func TestWriterFullQueueDropsWithoutBlocking(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		obs := newCounter()
		cfg := testConfig()
		cfg.QueueSize, cfg.BatchSize, cfg.WriteTimeout = 10, 5, time.Minute
		release := holdWrites(t, d)
		w := New(d, cfg, Options{Observer: obs, Tick: make(chan time.Time)})
		const total = 1000
		done := make(chan struct{})
		go func() {
			for i := range total {
				w.Record(decision(i))
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Record blocked on a blocked database")
		}
		// At most one batch in the writer's hands plus a full queue survive.
		if st := w.Stats(); st.QueueFull < total-uint64(cfg.QueueSize+cfg.BatchSize) ||
			obs.dropped.Load() != int64(st.QueueFull) {
			t.Fatalf("stats %+v, observer dropped %d; want at least %d dropped",
				st, obs.dropped.Load(), total-cfg.QueueSize-cfg.BatchSize)
		}
		release()
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		st := w.Stats()
		if st.Written+st.QueueFull+st.WriteError != total || int(st.Written) != countRows(t, d) || st.Written == 0 {
			t.Fatalf("stats %+v, %d rows in table: every row must be written or counted", st, countRows(t, d))
		}
	})
}

// A batch that misses its deadline is dropped and counted, and the writer
// carries on once the database answers again.
func TestWriterDropsFailedBatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		obs := newCounter()
		cfg := testConfig()
		cfg.WriteTimeout = 200 * time.Millisecond
		release := holdWrites(t, d)
		w := New(d, cfg, Options{Observer: obs, Tick: make(chan time.Time)})
		defer w.Close(ctx)
		w.Record(decision(1))
		w.Record(decision(2))
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.WriteError != 2 || obs.dropped.Load() != 2 {
			t.Fatalf("stats %+v, observer dropped %d; want 2 rows failed", st, obs.dropped.Load())
		}
		release()
		w.Record(decision(3))
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.Written != 1 || countRows(t, d) != 1 {
			t.Fatalf("after recovery: stats %+v, %d rows; want 1 written", st, countRows(t, d))
		}
	})
}

// Close gives up at its deadline even when the database never answers.
func TestWriterCloseHonoursDeadline(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		cfg := testConfig()
		cfg.WriteTimeout = time.Minute
		release := holdWrites(t, d)
		defer release()
		w := New(d, cfg, Options{Tick: make(chan time.Time)})
		w.Record(decision(1))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := w.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
			t.Fatalf("Close = %v after %v; want DeadlineExceeded soon after 300ms", err, time.Since(start))
		}
		if st := w.Stats(); st.WriteError+st.QueueFull != 1 {
			t.Fatalf("stats %+v: the abandoned row must be counted", st)
		}
	})
}

// A closed pool makes every write fail: counted, logged, never a panic.
func TestWriterClosedPool(t *testing.T) {
	d := dbtest.Open(t, db.Postgres)
	ctx := dbtest.Context(t)
	w := New(d, testConfig(), Options{Tick: make(chan time.Time)})
	d.PG.Close()
	for i := range 4 {
		w.Record(decision(i))
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.WriteError != 4 || st.Written != 0 {
		t.Fatalf("stats %+v; want 4 failed", st)
	}
}

// A panic in the driver costs the batch in hand, counted and logged; the
// writer carries on, Flush does not hang, and Close still returns.
func TestWriterSurvivesPanic(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		var calls atomic.Int32
		insert := func(ctx context.Context, d *db.DB, rows []Row, waits *storeWaits) (int, error) {
			if calls.Add(1) != 2 { // only the second batch is written
				panic("driver bug")
			}
			return insertSome(ctx, d, rows, waits)
		}
		var logs bytes.Buffer
		obs := newCounter()
		w := start(d, testConfig(), Options{Observer: obs, Tick: make(chan time.Time),
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}, insert)
		// A Flush that meets a panic returns; the second is served after
		// the restart, so the writer's state is settled when it returns.
		flushTwice := func() {
			for range 2 {
				if err := w.Flush(ctx); err != nil {
					t.Fatalf("Flush after a panic: %v", err)
				}
			}
		}
		for i := range 5 { // the first batch of 3 panics; 2 rows wait
			w.Record(decision(i))
		}
		flushTwice()
		if n := countRows(t, d); n != 2 {
			t.Fatalf("after a panic: %d rows, want 2 written", n)
		}
		w.Record(decision(5)) // panics within Flush
		flushTwice()
		w.Record(decision(6)) // panics within Close
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		st := w.Stats()
		if st.Written != 2 || st.WriteError != 5 || obs.dropped.Load() != 5 {
			t.Fatalf("stats %+v, observer dropped %d; want 2 written, 5 failed", st, obs.dropped.Load())
		}
		if n := strings.Count(logs.String(), "decision log: writer panicked"); n != 3 {
			t.Fatalf("%d panics logged, want 3:\n%s", n, logs.String())
		}
	})
}

// A batch is one transaction, unless on SQLite something waits for the
// store's one connection: then the transaction ends after the statement
// in progress (at most sqliteTxRows rows), so greylist decisions wait
// only that long. On PostgreSQL it is one COPY whatever waits.
func TestWriterTransactionSize(t *testing.T) {
	for _, waiting := range []bool{false, true} {
		t.Run(fmt.Sprint("waiting=", waiting), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, d *db.DB) {
				ctx := dbtest.Context(t)
				var sizes []int // written by the writer goroutine, read after Flush
				insert := func(ctx context.Context, d *db.DB, rows []Row, waits *storeWaits) (int, error) {
					n, err := insertSome(ctx, d, rows, waits)
					sizes = append(sizes, n)
					return n, err
				}
				cfg := DefaultConfig()
				cfg.BatchSize = 2*sqliteTxRows + 44
				w := start(d, cfg, Options{Tick: make(chan time.Time)}, insert)
				if waiting {
					var n atomic.Int64 // a new wait at every look
					w.waits = &storeWaits{count: func() int64 { return n.Add(1) }, yield: runtime.Gosched}
				}
				defer w.Close(ctx)
				for i := range cfg.BatchSize {
					w.Record(decision(i))
				}
				if err := w.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprint([]int{cfg.BatchSize})
				if waiting && !d.IsPostgres() {
					want = fmt.Sprint([]int{sqliteTxRows, sqliteTxRows, 44})
				}
				if got := fmt.Sprint(sizes); got != want {
					t.Errorf("transactions of %s rows, want %s", got, want)
				}
				if n := countRows(t, d); n != cfg.BatchSize || w.Stats().Written != uint64(cfg.BatchSize) {
					t.Errorf("%d rows stored, %d counted; want %d", n, w.Stats().Written, cfg.BatchSize)
				}
			})
		})
	}
}

// A statement that waits for the SQLite store's one connection ends the
// decision log's transaction at its next statement of sqliteTxRows rows:
// the writer's count of waits is database/sql's.
func TestWriterYieldsToWaiter(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	rows := make([]Row, 3*sqliteTxRows)
	for i := range rows {
		rows[i] = FromDecision(decision(i), "mx1")
	}
	w := start(d, DefaultConfig(), Options{Tick: make(chan time.Time)}, insertSome)
	defer w.Close(ctx)
	if n, err := insertSome(ctx, d, rows, w.waits); n != len(rows) || err != nil {
		t.Fatalf("nothing waiting: a transaction of %d rows, %v; want all %d", n, err, len(rows))
	}
	// A statement waits while the first INSERT runs: waits moves after BEGIN.
	var once sync.Once
	done := make(chan error, 1)
	waits := &storeWaits{yield: runtime.Gosched, count: func() int64 {
		n := w.waits.count()
		once.Do(func() {
			go func() { _, err := d.SQL.ExecContext(ctx, "SELECT 1"); done <- err }()
			for w.waits.count() == n {
				runtime.Gosched()
			}
		})
		return n
	}}
	if n, err := insertSome(ctx, d, rows, waits); n != sqliteTxRows || err != nil {
		t.Errorf("a statement waiting: a transaction of %d rows, %v; want %d", n, err, sqliteTxRows)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The SQLite writer yields the CPU between the statements of a
// transaction (one fewer than it has) once calmAfter transactions in a
// row began with nothing having waited for the store's connection, and
// not after something did: then greylisting uses the store, and a yield
// would keep its connection from it longer.
func TestWriterYieldsCPUOnlyWhileStoreCalm(t *testing.T) {
	d := dbtest.Open(t, db.SQLite)
	ctx := dbtest.Context(t)
	rows := make([]Row, 3*sqliteTxRows+4) // statements of 64, 64, 64 and 4 rows
	for i := range rows {
		rows[i] = FromDecision(decision(i), "mx1")
	}
	yields := 0
	waits := newStoreWaits(d.SQL)
	waits.yield = func() { yields++ }
	waits.last = waits.count() - 1 // a wait since the previous transaction
	var want, got []int
	for tx := range 2*calmAfter + 3 {
		if tx == calmAfter+2 {
			waits.last-- // a wait again
		}
		yields = 0
		if n, err := insertSome(ctx, d, rows, waits); n != len(rows) || err != nil {
			t.Fatalf("a transaction of %d rows, %v; want all %d", n, err, len(rows))
		}
		got = append(got, yields)
		if calm := tx >= calmAfter && tx < calmAfter+2 || tx >= 2*calmAfter+2; calm {
			want = append(want, 3) // between the four statements
		} else {
			want = append(want, 0)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("yields per transaction %v, want %v", got, want)
	}
}

// A decision without a client address is stored with client NULL, beside
// one with an address, in one batch.
func TestInsertNullClient(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		ctx := dbtest.Context(t)
		with, without := FromDecision(decision(1), "mx1"), FromDecision(decision(2), "mx1")
		without.Client = netip.Addr{}
		if err := Insert(ctx, d, []Row{with, without}); err != nil {
			t.Fatal(err)
		}
		q := "SELECT count(*) FROM decisions WHERE client IS NULL OR client = ''"
		if d.IsPostgres() {
			q = "SELECT count(*) FROM decisions WHERE client IS NULL"
		}
		var n int
		var err error
		if d.IsPostgres() {
			err = d.PG.QueryRow(ctx, q).Scan(&n)
		} else {
			err = d.SQL.QueryRowContext(ctx, q).Scan(&n)
		}
		if err != nil || n != 1 {
			t.Fatalf("rows without a client: %d, %v; want 1", n, err)
		}
	})
}

// With the store slower than the mail, the writer still comes back to its
// loop: each write here fails and, meanwhile, a batch more is recorded.
// A tick's drain, and a full batch's writeFull, write what was queued
// when they started, so the next tick (the warning about lost rows, the
// partitions' upkeep) is served at once, not when the mail stops. The
// first write itself queues that tick, so how the test's goroutine is
// scheduled does not matter.
func TestWriterServesTicksWhileMailOutpacesTheStore(t *testing.T) {
	for _, trigger := range []string{"tick", "full"} {
		t.Run(trigger, func(t *testing.T) {
			d := dbtest.Open(t, db.SQLite)
			const limit = 300 // writes that record more; beyond, the mail stops
			var (
				writes, servedAt atomic.Int64
				w                *Writer
				once             sync.Once
				done             = make(chan struct{})
				tick             = make(chan time.Time, 1)
			)
			slow := func(context.Context, *db.DB, []Row, *storeWaits) (int, error) {
				n := writes.Add(1)
				switch {
				case n == 1:
					tick <- t0 // the next tick, pending from now on
				case len(tick) == 0 && servedAt.CompareAndSwap(0, n):
					once.Do(func() { close(done) }) // the loop took it
				}
				if n <= limit {
					for i := range w.cfg.BatchSize {
						w.Record(decision(int(n)*10 + i))
					}
				} else {
					once.Do(func() { close(done) })
				}
				return 0, errors.New("timeout: context deadline exceeded")
			}
			cfg := testConfig()
			cfg.QueueSize = 10 * cfg.BatchSize
			w = start(d, cfg, Options{Tick: tick}, slow)
			defer w.Close(dbtest.Context(t))
			if trigger == "tick" {
				w.Record(decision(0))
				tick <- t0 // drain
			} else {
				for i := range cfg.BatchSize {
					w.Record(decision(i)) // writeFull
				}
			}
			select {
			case <-done:
			case <-dbtest.Context(t).Done():
				t.Fatal("no write after the first")
			}
			if n := servedAt.Load(); n == 0 || n > limit {
				t.Fatalf("the next tick waited for %d writes (0: never served): until the mail stopped", writes.Load())
			}
		})
	}
}
