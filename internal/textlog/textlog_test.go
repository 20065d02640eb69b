package textlog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pieces are what random strings are made of: every ASCII byte, bytes
// that are not UTF-8, and runes TextHandler quotes for (spaces beyond
// ASCII, unprintable ones) or writes bare (letters, marks, symbols).
var pieces = func() []string {
	p := []string{"\xff", "\xc3", "\xe2\x80", "\u00a0", "\u2028", "\u3000", "\ufeff", "\u200b",
		"\u0301", "é", "ß", "日本", "\U0001F600", "\U000E0001", "\ufffd", "==", `\"`, "a b"}
	for c := range 128 {
		p = append(p, string(rune(c)))
	}
	return p
}()

func randomString(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(6) {
		if rng.IntN(3) == 0 {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		} else {
			b.WriteString("mx.example")
		}
	}
	return b.String()
}

func randomValue(rng *rand.Rand) slog.Value {
	switch rng.IntN(12) {
	case 0:
		return slog.Int64Value(rng.Int64() - math.MaxInt64/2)
	case 1:
		return slog.Uint64Value(rng.Uint64())
	case 2:
		return slog.Float64Value([]float64{0, -0.5, 1e21, 3.14159, math.Inf(1), math.NaN(), 1e-7}[rng.IntN(7)])
	case 3:
		return slog.BoolValue(rng.IntN(2) == 0)
	case 4:
		return slog.DurationValue(time.Duration(rng.Int64N(int64(100*time.Hour))) - time.Hour)
	// Kinds the fast path leaves to TextHandler.
	case 5:
		return slog.TimeValue(time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)))
	case 6:
		return slog.AnyValue(errors.New(randomString(rng)))
	case 7:
		return slog.GroupValue(slog.String(randomString(rng), randomString(rng)))
	default:
		return slog.StringValue(randomString(rng))
	}
}

// randomRecord is a record with a random time (zero, with or without a
// monotonic reading, years TextHandler's layout may not cover), level,
// message and attributes; fastOnly keeps to what the fast path formats.
func randomRecord(rng *rand.Rand, fastOnly bool) slog.Record {
	var tm time.Time
	switch rng.IntN(5) {
	case 0: // zero: no time key
	case 1:
		tm = time.Now().Add(time.Duration(rng.Int64N(1e12)))
	case 2:
		tm = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", rng.IntN(50000)-25000))
	case 3:
		if !fastOnly { // years before 0 and after 9999 too
			tm = time.Unix(rng.Int64N(1e12)-5e11, rng.Int64N(1e9)).UTC()
			break
		}
		fallthrough
	default:
		tm = time.Unix(rng.Int64N(2e10)-6e10, rng.Int64N(1e9)).UTC()
	}
	level := slog.Level(rng.IntN(20) - 8)
	r := slog.NewRecord(tm, level, randomString(rng), 0)
	for range rng.IntN(16) {
		v := randomValue(rng)
		for fastOnly && !fastKind[v.Kind()] {
			v = randomValue(rng)
		}
		key := randomString(rng)
		switch {
		case fastOnly && key == "":
			key = "k"
		case !fastOnly && rng.IntN(20) == 0:
			key = ""
		}
		r.AddAttrs(slog.Attr{Key: key, Value: v})
	}
	return r
}

// simple reports whether Handle formats r itself: simpleTime and every
// attribute simpleAttr.
func simple(r slog.Record) bool {
	ok := simpleTime(r.Time)
	r.Attrs(func(a slog.Attr) bool {
		ok = ok && simpleAttr(a)
		return ok
	})
	return ok
}

var fastKind = map[slog.Kind]bool{slog.KindString: true, slog.KindInt64: true, slog.KindUint64: true,
	slog.KindFloat64: true, slog.KindBool: true, slog.KindDuration: true}

// Every record comes out as TextHandler writes it, byte for byte: those
// the fast path formats and those it passes on.
func TestMatchesTextHandler(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, fastOnly := range []bool{true, false} {
		var got, want bytes.Buffer
		opts := &slog.HandlerOptions{Level: slog.LevelDebug - 10}
		h, ref := New(&got, opts), slog.NewTextHandler(&want, opts)
		fast := 0
		for i := range 20000 {
			r := randomRecord(rng, fastOnly)
			if simple(r) {
				fast++
			}
			got.Reset()
			want.Reset()
			if err := h.Handle(context.Background(), r.Clone()); err != nil {
				t.Fatal(err)
			}
			_ = ref.Handle(context.Background(), r)
			if got.String() != want.String() {
				t.Fatalf("record %d:\n got %q\nwant %q", i, got.String(), want.String())
			}
		}
		if fastOnly && fast < 18000 {
			t.Errorf("only %d records of 20000 took the fast path", fast)
		}
	}
}

// HandleFields writes what TextHandler writes for the record of the same
// fields: strings and durations, random keys and values.
func TestHandleFieldsMatchesTextHandler(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	var got, want bytes.Buffer
	h, ref := New(&got, nil), slog.NewTextHandler(&want, nil)
	for i := range 20000 {
		r := randomRecord(rng, true)
		level, msg := r.Level, r.Message
		r = slog.NewRecord(r.Time, level, msg, 0) // only the kinds HandleFields writes
		var attrs []slog.Attr
		for range rng.IntN(16) {
			key := randomString(rng) + "k"
			if rng.IntN(4) == 0 {
				attrs = append(attrs, slog.Duration(key, time.Duration(rng.Int64N(int64(100*time.Hour)))-time.Hour))
			} else {
				attrs = append(attrs, slog.String(key, randomString(rng)))
			}
		}
		r.AddAttrs(attrs...)
		got.Reset()
		want.Reset()
		ok, err := h.HandleFields(r.Time, level, msg, FieldsFunc(func(l *Line) {
			for _, a := range attrs {
				if a.Value.Kind() == slog.KindDuration {
					l.Duration(a.Key, a.Value.Duration())
				} else {
					l.String(a.Key, a.Value.String())
				}
			}
		}))
		if !ok || err != nil {
			t.Fatalf("record %d: HandleFields: %v, %v", i, ok, err)
		}
		_ = ref.Handle(context.Background(), r)
		if got.String() != want.String() {
			t.Fatalf("record %d:\n got %q\nwant %q", i, got.String(), want.String())
		}
	}
	// What Handle leaves to TextHandler, HandleFields leaves to its caller.
	for _, opts := range []*slog.HandlerOptions{{AddSource: true}, {ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}} {
		got.Reset()
		if ok, _ := New(&got, opts).HandleFields(time.Now(), slog.LevelInfo, "m", FieldsFunc(func(*Line) {})); ok || got.Len() > 0 {
			t.Errorf("opts %+v: HandleFields wrote %q", opts, got.String())
		}
	}
	if ok, _ := h.HandleFields(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", FieldsFunc(func(*Line) {})); ok {
		t.Error("HandleFields took a year TextHandler's layout does not cover")
	}
}

// Options and derived handlers that the fast path does not cover still
// write what TextHandler writes; Enabled agrees with it.
func TestOptionsAndDerived(t *testing.T) {
	rep := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "secret" {
			a.Value = slog.StringValue("***")
		}
		return a
	}
	for _, opts := range []*slog.HandlerOptions{nil, {Level: slog.LevelWarn},
		{ReplaceAttr: rep}, {AddSource: true}} {
		var got, want bytes.Buffer
		h, ref := New(&got, opts), slog.NewTextHandler(&want, opts)
		for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError + 3} {
			if h.Enabled(context.Background(), l) != ref.Enabled(context.Background(), l) {
				t.Errorf("opts %+v: Enabled(%v) differs", opts, l)
			}
		}
		log, refLog := slog.New(h), slog.New(ref)
		for _, l := range []*slog.Logger{log, refLog} {
			l.Warn("plain", "secret", "pw", "n", 3)
			l.With("conn", 7).Warn("derived", "k", "v")
			l.WithGroup("g").Warn("grouped", "k", "v")
		}
		// The two loggers ran a moment apart: their times may differ.
		times := regexp.MustCompile(`time=\S+ `)
		g, w := times.ReplaceAllString(got.String(), ""), times.ReplaceAllString(want.String(), "")
		if g != w || strings.Count(w, "\n") != 3 {
			t.Errorf("opts %+v:\n got %q\nwant %q", opts, g, w)
		}
	}
}

// The decision line's shape takes the fast path and allocates at most
// for its durations.
func TestFastPathAllocations(t *testing.T) {
	h := New(discard{}, nil)
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "decision", 0)
	r.AddAttrs(slog.String("client", "192.0.2.1"), slog.String("sender", "a b@example.net"),
		slog.String("action", "DEFER_IF_PERMIT 4.2.0 Greylisted"), slog.Duration("dur", 1500*time.Microsecond))
	if !simple(r) {
		t.Fatal("a decision line is not simple")
	}
	n := testing.AllocsPerRun(100, func() { _ = h.Handle(context.Background(), r) })
	if n > 1 {
		t.Errorf("%.0f allocations per record, want at most 1 (the duration's text)", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkHandle(b *testing.B) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "decision", 0)
	r.AddAttrs(slog.String("client", "192.0.2.1"), slog.String("client_name", "mail.example.org"),
		slog.String("helo", "mail.example.org"), slog.String("sender", "alice@example.org"),
		slog.String("rcpt", "bob@example.net"), slog.String("instance", "1a2b.3c4d.5e6f"),
		slog.String("queue_id", "4ABCDEF"), slog.String("check", "greylist"),
		slog.String("action", "DUNNO"), slog.String("reason", "passed (cached)"),
		slog.Duration("dur", 21*time.Microsecond))
	for name, h := range map[string]slog.Handler{"textlog": New(discard{}, nil), "TextHandler": slog.NewTextHandler(discard{}, nil)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				_ = h.Handle(context.Background(), r)
			}
		})
	}
}

// plain8 agrees with the byte classes on every word of bytes drawn from
// each class's edges.
func TestPlain8(t *testing.T) {
	edges := []byte{0, 1, 0x1f, ' ', '!', '"', '#', '<', '=', '>', 'a', '~', 0x7f, 0x80, 0xc3, 0xff}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 200000 {
		var b [8]byte
		want := true
		for i := range b {
			b[i] = edges[rng.IntN(len(edges))]
			if rng.IntN(3) == 0 {
				b[i] = byte('!' + rng.IntN(0x7f-'!'))
			}
			want = want && class[b[i]] == plain
		}
		if got := plain8(load8(string(b[:]))); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", b, got, want)
		}
	}
}
