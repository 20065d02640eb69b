package metrics

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/mxpolicyd/mxpolicyd/internal/hostport"
)

// Config is the metrics section of the configuration file.
type Config struct {
	// Listen is the host:port of the metrics HTTP listener. Default ""
	// (off): metrics are opt-in, and when on they belong on loopback
	// ("127.0.0.1:9430") or a management network, because they reveal
	// traffic volumes and list names to anyone who can reach them.
	Listen string `yaml:"listen"`
	// Path serves the Prometheus exposition. Default "/metrics", the path
	// every Prometheus scrape config assumes.
	Path string `yaml:"path"`
	// Report serves the HTML report of the last seven days at /report.
	// Default false: opt-in like the listener, since the page shows client
	// addresses and senders; it reads the database at most once a minute.
	Report bool `yaml:"report"`
	// PProf serves net/http/pprof's runtime profiles under /debug/pprof/
	// to loopback clients (pprof.go). Default false: opt-in, for taking a
	// CPU or heap profile of a running daemon.
	PProf bool `yaml:"pprof"`
}

// DefaultConfig returns metrics off, with the conventional path.
func DefaultConfig() Config { return Config{Path: "/metrics"} }

// Enabled reports whether a listener is configured.
func (c Config) Enabled() bool { return c.Listen != "" }

// Validate checks the listen address and the path; errors name the key.
func (c Config) Validate() error {
	if c.Listen != "" {
		if err := validListen(c.Listen); err != nil {
			return fmt.Errorf("metrics.listen: %w, got %q", err, c.Listen)
		}
	}
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("metrics.path: must start with \"/\", got %q", c.Path)
	}
	if c.Path == healthzPath || c.Path == readyzPath {
		return fmt.Errorf("metrics.path: %q is reserved for the health check", c.Path)
	}
	if c.Report && c.Path == ReportPath {
		return fmt.Errorf("metrics.path: %q is the report's while metrics.report is on", c.Path)
	}
	if c.PProf && c.Listen == "" {
		return fmt.Errorf("metrics.pprof: needs metrics.listen, the listener that serves it")
	}
	if c.PProf && strings.HasPrefix(c.Path, PProfPath) {
		return fmt.Errorf("metrics.path: %q is under the profiles' %s while metrics.pprof is on", c.Path, PProfPath)
	}
	if c.Report && c.Listen == "" {
		return fmt.Errorf("metrics.report: needs metrics.listen, the listener that serves it")
	}
	return c.checkRoutes()
}

// checkRoutes registers c's routes on a mux of its own, as Handler will:
// net/http refuses (by panicking) a pattern it cannot parse ("/metrics{")
// or one that conflicts with another ("/" beside /debug/pprof/), which
// would otherwise stop serve at start.
func (c Config) checkRoutes() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("metrics.path: %q cannot be served beside the listener's other paths: %v", c.Path, p)
		}
	}()
	mux := http.NewServeMux()
	for _, r := range c.routes(nil) {
		mux.Handle(r.pattern, http.NotFoundHandler())
	}
	return nil
}

func validListen(s string) error { return hostport.Check(s, true) }
