package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

const (
	healthzPath = "/healthz"
	readyzPath  = "/readyz"
	// ReportPath serves the HTML report when Config.Report is on.
	ReportPath = "/report"
	// pingTimeout bounds /readyz: probes time out after a few seconds,
	// and a store slower than this is not ready for policy requests either.
	pingTimeout = 2 * time.Second
	// shutdownTimeout lets a scrape in progress finish on shutdown.
	shutdownTimeout = 5 * time.Second
	// maxHeaderBytes is ample for a scraper or a browser; net/http's
	// default is 1 MiB (http.DefaultMaxHeaderBytes).
	maxHeaderBytes = 64 << 10
)

// limits bound what the listener's clients can hold. Its connections
// share the process's file descriptors (the unit's LimitNOFILE) with the
// policy listener, so no client keeps one for long and at most maxConns
// are open at once: the others wait in the kernel's accept queue, where
// they cost the process no descriptor.
type limits struct {
	// read bounds reading a request, headers included.
	read time.Duration
	// write bounds a reply from the end of its request's headers: above
	// promhttp's 10 s and the report's 20 s rendering budget.
	write time.Duration
	// idle closes a kept-alive connection with no next request.
	idle     time.Duration
	maxConns int
}

func defaultLimits() limits {
	return limits{read: 10 * time.Second, write: 30 * time.Second, idle: 60 * time.Second, maxConns: 64}
}

// Pinger reports whether the store is ready; nil means it is. An error
// with a Reason() string method has that reason shown by /readyz.
type Pinger func(ctx context.Context) error

// Server is the metrics HTTP listener: the exposition at Config.Path,
// /healthz and /readyz, and with Config.Report the HTML report.
type Server struct {
	cfg    Config
	m      *Metrics
	ping   Pinger
	log    *slog.Logger
	report http.Handler
	detail func() []string
	lim    limits
}

// ServeReport has the server answer ReportPath with h when Config.Report
// is on; call it before Serve.
func (s *Server) ServeReport(h http.Handler) { s.report = h }

// ReadyDetail has /readyz list f's lines after its status: the state of
// parts that do not make the daemon unready, such as each DNS list's
// self-check. f is called on every probe, so it must do no I/O. Call it
// before Serve.
func (s *Server) ReadyDetail(f func() []string) { s.detail = f }

// NewServer returns a server for m. ping backs /readyz; a nil ping makes
// /readyz the same as /healthz.
func NewServer(cfg Config, m *Metrics, ping Pinger, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Path == "" {
		cfg.Path = DefaultConfig().Path
	}
	return &Server{cfg: cfg, m: m, ping: ping, log: log, lim: defaultLimits()}
}

// Handler serves those paths, to GET and HEAD requests without a body
// only (bodiless); anything else is 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.cfg.routes(s) {
		mux.Handle(r.pattern, r.h)
	}
	return bodiless(mux)
}

// route is one pattern of the listener's mux and what serves it.
type route struct {
	pattern string
	h       http.Handler
}

// routes are the patterns c serves; with s nil, without handlers, for
// Validate to try them on a mux of its own.
func (c Config) routes(s *Server) []route {
	rs := []route{{"GET " + c.Path, nil}, {"GET " + healthzPath, nil}, {"GET " + readyzPath, nil}}
	if s != nil {
		rs[0].h = promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
			Registry:          s.m.reg, // counts promhttp's own errors
			Timeout:           10 * time.Second,
			EnableOpenMetrics: true,
		})
		rs[1].h, rs[2].h = http.HandlerFunc(s.healthz), http.HandlerFunc(s.readyz)
	}
	if c.PProf {
		rs = append(rs, route{PProfPath, pprofHandler()})
	}
	if c.Report && (s == nil || s.report != nil) {
		var h http.Handler
		if s != nil {
			h = s.report
		}
		rs = append(rs, route{"GET " + ReportPath, h})
	}
	return rs
}

// bodiless refuses, before h runs, a method other than GET or HEAD (405,
// with Allow as RFC 9110 §15.5.6 requires) and a request that declares a
// body (413): no endpoint takes input beyond its URL, and net/http reads
// up to 256 KiB of a body left unread before it replies. The refusal
// closes the connection (RFC 9110 §15.5.14 allows it), which also makes
// net/http send it without reading the body first (chunkWriter.writeHeader
// in net/http/server.go); the body still on the wire is then discarded
// within the read timeout.
func bodiless(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			refuse(w, http.StatusMethodNotAllowed)
		case r.ContentLength != 0: // -1 is a chunked body
			refuse(w, http.StatusRequestEntityTooLarge)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

func refuse(w http.ResponseWriter, code int) {
	w.Header().Set("Connection", "close")
	http.Error(w, http.StatusText(code), code)
}

// healthz answers 200 while the process can serve HTTP at all.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 503 while the store cannot take queries. The reply says
// only why in general terms (the error's Reason, e.g. "database not
// reachable", or "store unreachable"); the error itself, which may name
// hosts and users, goes to the debug log: the store logs its outages once
// when they start and end, and a probe every few seconds must not repeat
// them. The ReadyDetail lines follow the status either way: a failing DNS
// list is ignored by the daemon, which stays ready.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.ping != nil {
		ctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
		defer cancel()
		start := time.Now()
		err := s.ping(ctx)
		s.m.StoreOp("ping", time.Since(start), err)
		if err != nil {
			s.log.Debug("readyz: store not ready", slog.Any("err", err))
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", notReadyReason(err))
			s.writeDetail(w)
			return
		}
	}
	fmt.Fprintln(w, "ok")
	s.writeDetail(w)
}

func (s *Server) writeDetail(w io.Writer) {
	if s.detail == nil {
		return
	}
	for _, line := range s.detail() {
		fmt.Fprintln(w, line)
	}
}

// notReadyReason is err's Reason if it has one: a text meant for the
// reply, free of hosts and credentials.
func notReadyReason(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "store unreachable"
}

// ListenAndServe listens on Config.Listen and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully: scrapes in
// progress finish, within shutdownTimeout. It returns nil after a clean
// shutdown and the serving error otherwise. At most the limits' maxConns
// connections are open at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.httpServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(ln, s.lim.maxConns)) }()
	s.log.Info("metrics listening", slog.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// httpServer bounds every phase of a connection by s.lim. Without
// ReadTimeout and WriteTimeout net/http sets no deadline once the headers
// are read (http.Server docs), so a client that declares a body and never
// sends it, or never reads its reply, would hold its connection forever.
// pprof's profile, trace and delta profiles push the write deadline back
// by their `seconds` (configureWriteDeadline in net/http/pprof/pprof.go).
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.lim.read,
		ReadTimeout:       s.lim.read,
		WriteTimeout:      s.lim.write,
		IdleTimeout:       s.lim.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}
