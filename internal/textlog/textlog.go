// Package textlog is slog.TextHandler's output, made faster for the
// records a busy daemon writes most: one decision line per request, every
// attribute a string, number, bool or duration.
//
// Such a record is formatted here in one pass into a reused buffer.
// TextHandler (log/slog, text_handler.go and handler.go) gives each
// attribute a deferred recover and a resolve step and writes through a
// per-record state, which made formatting the decision line the largest
// single cost of a cached decision. Every other record, and every
// handler derived with WithAttrs or WithGroup, or with ReplaceAttr or
// AddSource set, goes to a TextHandler as before; the two write through
// one lock. A differential test holds the output byte for byte to
// TextHandler's.
package textlog

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Handler writes records in slog's text format (key=value pairs).
type Handler struct {
	slow  slog.Handler // TextHandler on the same writer: every record not fast
	level slog.Leveler
	out   *lockedWriter
	fast  bool // no ReplaceAttr, no AddSource, no attributes or groups added
	clock clock
}

// New returns a handler writing to w with opts (nil: defaults), whose
// output is slog.NewTextHandler(w, opts)'s.
func New(w io.Writer, opts *slog.HandlerOptions) *Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	out := &lockedWriter{w: w}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &Handler{
		slow:  slog.NewTextHandler(out, opts),
		level: level,
		out:   out,
		fast:  opts.ReplaceAttr == nil && !opts.AddSource,
	}
}

// Enabled reports whether l is at or above the handler's level.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs returns a TextHandler's: derived handlers are not fast.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler { return h.slow.WithAttrs(as) }

// WithGroup returns a TextHandler's: derived handlers are not fast.
func (h *Handler) WithGroup(name string) slog.Handler { return h.slow.WithGroup(name) }

// Handle writes r as one line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast || !simpleTime(r.Time) {
		return h.slow.Handle(ctx, r)
	}
	l := lines.Get().(*Line)
	defer lines.Put(l)
	b := h.appendHead(l.b[:0], r.Time, r.Level, r.Message)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if ok = simpleAttr(a); ok {
			b = appendValue(appendKey(b, a.Key), a.Value)
		}
		return ok
	})
	if !ok { // found in the one pass over the attributes: what was written goes
		l.b = b
		return h.slow.Handle(ctx, r)
	}
	l.b = b
	return h.write(l)
}

// write ends l's line, writes it and keeps its array for the next line.
func (h *Handler) write(l *Line) error {
	l.b = append(l.b, '\n')
	_, err := h.out.Write(l.b)
	return err
}

// Line is a record being written attribute by attribute (HandleFields).
// Lines are pooled (lines): a Line is valid only during the Fill call
// it is given to.
type Line struct{ b []byte }

// Fields appends a record's attributes to its line (HandleFields).
type Fields interface{ Fill(*Line) }

// FieldsFunc is a function as Fields.
type FieldsFunc func(*Line)

// Fill calls f(l).
func (f FieldsFunc) Fill(l *Line) { f(l) }

// String appends the attribute key=value, as Handle writes a string.
func (l *Line) String(key, value string) { l.b = appendString(appendKey(l.b, key), value) }

// Addr appends the attribute key=a, as Handle writes the string
// a.String(), or the empty string for the zero Addr, without making the
// string: an address's text never needs quoting, unless it has a zone.
func (l *Line) Addr(key string, a netip.Addr) {
	switch {
	case !a.IsValid():
		l.String(key, "")
	case a.Zone() != "":
		l.String(key, a.String())
	default:
		l.b = a.AppendTo(appendKey(l.b, key))
	}
}

// Duration appends the attribute key=d, as Handle writes a duration.
func (l *Line) Duration(key string, d time.Duration) { l.b = appendDuration(appendKey(l.b, key), d) }

// appendKey is an attribute's " key=".
func appendKey(b []byte, key string) []byte {
	b = append(b, ' ')
	b = appendString(b, key)
	return append(b, '=')
}

// HandleFields writes what Handle writes for a record at t of level and
// msg with the attributes fill appends, without the record: for a caller
// that has the values at hand, building the slog.Record and then reading
// it back cost as much as the formatting. It returns false, having
// written nothing, when Handle would not take the fast path (a handler
// with ReplaceAttr or AddSource, a time out of TextHandler's layout);
// the caller then builds the record. Keys must not be empty.
func (h *Handler) HandleFields(t time.Time, level slog.Level, msg string, f Fields) (bool, error) {
	if !h.fast || !simpleTime(t) {
		return false, nil
	}
	l := lines.Get().(*Line)
	defer lines.Put(l)
	l.b = h.appendHead(l.b[:0], t, level, msg)
	f.Fill(l)
	return true, h.write(l)
}

// appendHead is a line's time, level and message.
func (h *Handler) appendHead(b []byte, t time.Time, level slog.Level, msg string) []byte {
	if !t.IsZero() {
		b = append(b, "time="...)
		b = h.appendTime(b, t)
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendString(b, level.String())
	b = append(b, " msg="...)
	return appendString(b, msg)
}

// lines keeps the lines' arrays between records: a line is written
// whole, then its array serves the next.
var lines = sync.Pool{New: func() any { return &Line{b: make([]byte, 0, 1024)} }}

// simpleTime reports whether TextHandler's layout covers t.
func simpleTime(t time.Time) bool {
	y := t.Year()
	return t.IsZero() || (y >= 0 && y <= 9999)
}

// simpleAttr reports whether a is written as is: it has a key and a kind
// with no group and no value that resolves or marshals itself.
func simpleAttr(a slog.Attr) bool {
	switch a.Value.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64,
		slog.KindBool, slog.KindDuration:
		return a.Key != ""
	}
	return false
}

func appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	default: // KindDuration, as simple admits
		return appendDuration(b, v.Duration())
	}
}

// appendDuration is d.String(), written as is, never quoted, as
// TextHandler writes a duration.
func appendDuration(b []byte, d time.Duration) []byte {
	return append(b, d.String()...)
}

// appendTime is TextHandler's time: RFC 3339 with exactly three digits
// of milliseconds, truncated. The part up to the second, and the zone,
// are formatted once a second (t.AppendFormat is most of the cost of a
// line); the milliseconds are appended each time.
func (h *Handler) appendTime(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	c := &h.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sec != sec || c.loc != loc || c.text == nil {
		c.sec, c.loc = sec, loc
		c.text = t.Truncate(time.Second).AppendFormat(c.text[:0], "2006-01-02T15:04:05")
		c.zone = t.AppendFormat(c.zone[:0], "Z07:00")
	}
	ms := t.Nanosecond() / int(time.Millisecond)
	b = append(b, c.text...)
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, c.zone...)
}

// clock is the formatted second appendTime last wrote.
type clock struct {
	mu         sync.Mutex
	sec        int64
	loc        *time.Location
	text, zone []byte
}

// appendString writes s bare, or quoted as strconv.Quote does when
// TextHandler would quote it: when it is empty, or holds a space, an "=",
// a quote, a control character or a byte that is not UTF-8.
func appendString(b []byte, s string) []byte {
	if !needsQuoting(s) {
		return append(b, s...)
	}
	if !printableASCII(s) {
		return strconv.AppendQuote(b, s)
	}
	// strconv.Quote of printable ASCII: only the quote and the backslash
	// are escaped. Most quoted values are these ("passed (cached)").
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	i := 0
	for ; i+8 <= len(s) && plain8(load8(s[i:])); i += 8 {
	}
	for i < len(s) {
		switch class[s[i]] {
		case plain:
			i++
		case quoted:
			return true
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return true
			}
			i += size
		}
	}
	return false
}

// load8 is s's first 8 bytes as a little-endian word (one load once the
// compiler combines them).
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// plain8 reports whether the 8 bytes of w are all of class plain: ASCII
// above the space, and neither "=" nor the quote. The tests for a byte
// below a value and for a zero byte are the classic word-at-a-time ones
// (Hacker's Delight, 6-1), exact here because no byte has its high bit
// set once the first test has passed.
func plain8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if w&highs != 0 {
		return false
	}
	below := (w - 0x21*ones) & ^w & highs // a byte < 0x21
	eq := (w ^ '='*ones - ones) & ^(w ^ '='*ones) & highs
	quote := (w ^ '"'*ones - ones) & ^(w ^ '"'*ones) & highs
	return below|eq|quote == 0
}

// The classes of a byte for needsQuoting.
const (
	plain    = iota // written bare
	quoted          // makes the string quoted
	multiple        // starts a rune of more than one byte: look at the rune
)

// class holds each byte's class. TextHandler writes the printable ASCII
// bytes bare but for space, "=" and the quote (a backslash stays bare),
// and also DEL, which its table of JSON-safe bytes lets through.
var class = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= utf8.RuneSelf:
			t[c] = multiple
		case c <= ' ' || c == '=' || c == '"':
			t[c] = quoted
		}
	}
	return t
}()

// lockedWriter serializes the writes of both paths.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
