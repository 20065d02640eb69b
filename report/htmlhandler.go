package report

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

const (
	// handlerWindow is how far back the served page looks, the default
	// --since of `mxpolicyd report`.
	handlerWindow = 7 * 24 * time.Hour
	// handlerCache is how long a rendered page is served again: reloads
	// and several viewers cost the database one render a minute at most.
	handlerCache = time.Minute
	// handlerTimeout bounds one render. The queries share the store with
	// the policy checks, so a slow report gives up rather than hold
	// connections; on a month of decisions they take a few seconds
	// (report/BENCHMARKS.md).
	handlerTimeout = 20 * time.Second
)

// Handler serves the HTML report of the last seven days, read-only. One
// render runs at a time, its page is reused for a minute, and a render
// that fails answers 503 with a generic text: the error, which may name
// hosts, goes to the log.
type Handler struct {
	db     *db.DB
	checks []string // HTMLOptions.Checks
	log    *slog.Logger
	now    func() time.Time

	sem  chan struct{} // held while rendering, and guards page and at
	page []byte
	at   time.Time
}

// NewHandler returns a Handler reading d, charting checks in the order
// of checks (HTMLOptions.Checks); log may be nil.
func NewHandler(d *db.DB, checks []string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{db: d, checks: checks, log: log, now: time.Now, sem: make(chan struct{}, 1)}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := h.render(r.Context())
	if err != nil {
		h.log.Warn("report: render failed", slog.Any("err", err))
		http.Error(w, "report unavailable", http.StatusServiceUnavailable)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// The page carries the same policy in a <meta>, for the file that
	// `mxpolicyd report` writes; served, the header applies from the
	// first byte (CSP Level 3 §3.1 and §3.3).
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, max-age=60")
	w.Write(body)
}

// render returns the cached page while it is fresh, else makes a new one.
// Requests arriving during a render wait for it (or for their own end)
// and then find it cached.
func (h *Handler) render(ctx context.Context) ([]byte, error) {
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	now := h.now()
	if h.page != nil && now.Sub(h.at) < handlerCache {
		return h.page, nil
	}
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	defer cancel()
	var buf bytes.Buffer
	opt := HTMLOptions{Since: now.Add(-handlerWindow), Now: now, Checks: h.checks}
	if err := WriteHTML(ctx, h.db, opt, &buf); err != nil {
		return nil, err
	}
	h.page, h.at = buf.Bytes(), now
	return h.page, nil
}
