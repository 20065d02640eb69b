package db

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/logtest"
	"github.com/mxpolicyd/mxpolicyd/internal/pgtest"
)

// The published offset is the sample with the shortest round trip among
// the last eight, so one slow probe moves nothing; a sample that proves
// the offset has changed (a stepped clock) replaces them all at once.
func TestServerClockKeepsLeastDelayedSample(t *testing.T) {
	c := serverClock{log: slog.New(slog.DiscardHandler)}
	ms := time.Millisecond
	steps := []struct {
		s    clockSample
		want time.Duration
	}{
		{clockSample{offset: 5 * ms, rtt: 4 * ms}, 5 * ms},
		{clockSample{offset: 2 * ms, rtt: 1 * ms}, 2 * ms},     // less delayed: wins
		{clockSample{offset: 400 * ms, rtt: 800 * ms}, 2 * ms}, // a slow probe, consistent with 2 ms: ignored
		{clockSample{offset: 3 * ms, rtt: 2 * ms}, 2 * ms},
		{clockSample{offset: time.Hour, rtt: 3 * ms}, time.Hour}, // stepped: at once
		{clockSample{offset: time.Hour + ms, rtt: 2 * ms}, time.Hour + ms},
		{clockSample{offset: time.Hour + 3*ms, rtt: 5 * ms}, time.Hour + ms}, // steady again
	}
	for i, st := range steps {
		c.add(st.s)
		if got := time.Duration(c.offset.Load()); got != st.want {
			t.Fatalf("after sample %d: offset %v, want %v", i, got, st.want)
		}
	}
}

// An offset past ClockWarnOffset is logged once, and its end once.
func TestServerClockWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	c := serverClock{log: slog.New(slog.NewTextHandler(&logs, nil))}
	for _, off := range []time.Duration{0, 2 * time.Minute, 2 * time.Minute, 2 * time.Minute} {
		c.add(clockSample{offset: off, rtt: time.Millisecond})
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for a 2 min offset over three probes, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "server_ahead_by=2m0s") {
		t.Errorf("the warning does not give the offset:\n%s", logs.String())
	}
	for _, off := range []time.Duration{-time.Second, 0} { // at the limit is within it
		c.add(clockSample{offset: off, rtt: time.Millisecond})
	}
	if n := strings.Count(logs.String(), "agrees with the database server's again"); n != 1 {
		t.Fatalf("%d lines saying the clocks agree again, want 1:\n%s", n, logs.String())
	}
}

// Against a real server: this host's clock, set ten minutes fast, is
// measured ten minutes ahead of the server's, to within the round trip;
// the true clock (the server runs on this machine) agrees with it.
func TestStartMeasuresClockOffset(t *testing.T) {
	ctx := ctxT(t)
	dsn := pgtest.New(t)
	var logs logtest.Buffer
	fast := func() time.Time { return time.Now().Add(10 * time.Minute) }
	d, err := Start(ctx, dsn, StartOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), now: fast})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitReady(ctx, t, d)
	if off := d.ClockOffset(); (off + 10*time.Minute).Abs() > time.Second {
		t.Errorf("ClockOffset %v with this host ten minutes fast, want -10m within a second", off)
	}
	if off, err := MeasureClockOffset(ctx, d); err != nil || off != d.ClockOffset() {
		t.Errorf("MeasureClockOffset of a started DB: %v, %v; want the connector's %v", off, err, d.ClockOffset())
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"database clock:") {
		t.Errorf("no warning about a ten-minute offset:\n%s", logs.String())
	}

	opened, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	if opened.ClockOffset() != 0 {
		t.Errorf("ClockOffset of an opened DB: %v, want 0 (no connector)", opened.ClockOffset())
	}
	off, err := MeasureClockOffset(ctx, opened)
	if err != nil {
		t.Fatal(err)
	}
	if off.Abs() > time.Second {
		t.Errorf("MeasureClockOffset: %v between this machine and its own server, want within a second", off)
	}
}

// SQLite's clock is this host's.
func TestSQLiteClockOffsetIsZero(t *testing.T) {
	ctx := ctxT(t)
	d, err := Open(ctx, t.TempDir()+"/c.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if off, err := MeasureClockOffset(ctx, d); off != 0 || err != nil {
		t.Errorf("MeasureClockOffset on SQLite: %v, %v; want 0", off, err)
	}
}
