package policy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/internal/textlog"
)

// lineText is what client-supplied values may hold: spaces, quotes, "=",
// control bytes, bytes that are not UTF-8, runes TextHandler quotes.
var lineText = []string{"", "mx.example.org", "a b", `"q"`, "k=v", "\x00\x7f", "\xff\xc3", "\u00a0", "日本", "\u2028", `\`}

func randomLineText(rng *rand.Rand) string {
	var b strings.Builder
	for range rng.IntN(4) {
		b.WriteString(lineText[rng.IntN(len(lineText))])
	}
	return b.String()
}

func randomDecision(rng *rand.Rand) *Decision {
	s := func() string { return randomLineText(rng) }
	req := &Request{ClientName: s(), HeloName: s(), Sender: s(), Recipient: s(), Instance: s(), QueueID: s()}
	switch rng.IntN(5) {
	case 0: // none
	case 1:
		req.ClientAddress = netip.MustParseAddr("2001:db8::" + strconv.FormatInt(rng.Int64N(65536), 16))
	case 2: // a zone, as netip parses one; "a b" needs quoting
		req.ClientAddress = netip.MustParseAddr("fe80::1").WithZone(randomLineText(rng) + "z")
	default:
		req.ClientAddress = netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))})
	}
	d := &Decision{Req: req, Check: s(), Reason: s(), Action: Action{Verb: Prepend, Text: s()},
		Duration: time.Duration(rng.Int64N(int64(time.Minute)))}
	if rng.IntN(2) == 0 {
		d.Delay = time.Duration(rng.Int64N(int64(time.Hour)))
	}
	if rng.IntN(3) == 0 {
		d.Observe, d.Would = true, Action{Verb: Code, Code: "554", Text: s()}
	}
	for range rng.IntN(3) {
		d.Errors = append(d.Errors, CheckError{Check: "c" + s(), Err: errors.New(s()), Kind: ErrorKind(s())})
	}
	return d
}

// The decision line is byte for byte what slog.TextHandler writes for its
// record, whether textlog formats it from the attributes as given
// (HandleFields) or asynclog's writer does so later (HandleJob).
func TestDecisionLineFastPaths(t *testing.T) {
	var want, direct, queued bytes.Buffer
	ref := NewEngine(Options{Logger: slog.New(slog.NewTextHandler(&want, nil))}, nil)
	fast := NewEngine(Options{Logger: slog.New(textlog.New(&direct, nil))}, nil)
	q := asynclog.NewBuffered(&queued, func(w io.Writer) slog.Handler { return textlog.New(w, nil) }, asynclog.Options{})
	async := NewEngine(Options{Logger: slog.New(q)}, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		d := randomDecision(rng)
		ref.log(d)
		fast.log(d)
		async.log(d)
	}
	if err := q.Close(context.Background()); err != nil || q.Dropped() != 0 {
		t.Fatalf("asynclog: %v, %d dropped", err, q.Dropped())
	}
	// The engines read the clock a moment apart.
	times := regexp.MustCompile(`(?m)^time=\S+ `)
	w := times.ReplaceAllString(want.String(), "")
	if strings.Count(w, "\n") != 2000 || !strings.Contains(w, "error_c") {
		t.Fatalf("reference output: %d lines, %q...", strings.Count(w, "\n"), w[:min(len(w), 300)])
	}
	for name, got := range map[string]string{"HandleFields": direct.String(), "HandleJob": queued.String()} {
		if g := times.ReplaceAllString(got, ""); g != w {
			gl, wl := strings.Split(g, "\n"), strings.Split(w, "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Fatalf("%s, line %d:\n got %q\nwant %q", name, i, gl[i], wl[i])
				}
			}
			t.Fatalf("%s: %d lines, want %d", name, len(gl), len(wl))
		}
	}
}
