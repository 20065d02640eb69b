package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/internal/sdnotify"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// serveOpts are serve's flags; each overrides the config file's key.
type serveOpts struct {
	listen        []string
	database      string
	dns           string
	observe       bool
	logFormat     string
	logLevel      string
	metricsListen string
	noMigrate     bool
}

func newServeCmd(g *globalOpts) *cobra.Command {
	o := &serveOpts{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Postfix policy requests",
		Long: `Serve Postfix policy requests until SIGTERM or SIGINT (finish replies in
flight, close idle connections, flush the decision log, exit 0). SIGHUP
reloads the config file's reloadable parts (DNS, DNS lists, SPF, greylisting,
whitelist files, check settings, observe, skip_sasl, request_timeout) without
dropping connections; a bad file keeps the running config and logs why.
Listeners, the database, metrics and logging need a restart.`,
		Example: `  mxpolicyd serve
  mxpolicyd serve --listen 127.0.0.1:10040 --listen unix:/var/spool/postfix/mxpolicyd/policy
  mxpolicyd serve --config /etc/mxpolicyd/mxpolicyd.yaml --database postgres://mxpolicyd@db/mxpolicyd`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g.configPath, o, cmd)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.listen, "listen", "l", nil, "listen on host:port or unix:/path (repeatable; key listen)")
	f.StringVar(&o.database, "database", "", "postgres:// URL or SQLite file path (key database; env "+config.EnvDatabase+")")
	f.StringVar(&o.dns, "dns", "", "DNS server host:port for lists and SPF (key dns.server)")
	f.BoolVar(&o.observe, "observe", false, "compute and record decisions but always answer DUNNO (key observe)")
	f.StringVar(&o.logFormat, "log-format", "", "text or json (key log.format)")
	f.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error (key log.level)")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve /metrics, /healthz, /readyz on host:port (key metrics.listen)")
	f.BoolVar(&o.noMigrate, "no-migrate", false, "do not apply database migrations at start (key auto_migrate)")
	return cmd
}

// apply overlays the flags that were given on the config. A flag's value
// is parsed here, once, as the file's is when it is read.
func (o *serveOpts) apply(cmd *cobra.Command) (func(*config.Config), error) {
	f := cmd.Flags()
	var level config.Level
	if f.Changed("log-level") {
		if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level (key log.level): %w", err)
		}
	}
	return func(c *config.Config) {
		if f.Changed("listen") {
			c.Listen = o.listen
		}
		if f.Changed("database") {
			c.Database = o.database
		}
		if f.Changed("dns") {
			c.DNS.Server = o.dns
		}
		if f.Changed("observe") {
			c.Observe = o.observe
		}
		if f.Changed("log-format") {
			c.Log.Format = o.logFormat
		}
		if f.Changed("log-level") {
			c.Log.Level = level
		}
		if f.Changed("metrics-listen") {
			c.Metrics.Listen = o.metricsListen
		}
		if f.Changed("no-migrate") {
			c.AutoMigrate = !o.noMigrate
		}
	}, nil
}

func runServe(ctx context.Context, cfgPath string, o *serveOpts, cmd *cobra.Command) error {
	// SIGHUP is caught from the start, before any socket accepts: the
	// Go runtime's default for it is to exit (os/signal, "Default
	// behavior of signals in Go programs"), and a reload sent as soon as
	// the daemon answers must not stop it. One that comes during startup
	// waits in the channel and reloads once the daemon runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A write to a stderr whose reader has gone (a `| logger` that
	// exited) must fail, and asynclog count the line, rather than end the
	// daemon: the Go runtime's default for a broken pipe on fd 1 or 2 is
	// to die of SIGPIPE (os/signal, "SIGPIPE"), an exit systemd's
	// Restart=on-failure takes for a clean one and does not restart
	// (systemd.service(5), SuccessExitStatus=).
	signal.Ignore(syscall.SIGPIPE)
	override, err := o.apply(cmd)
	if err != nil {
		return usageError{err}
	}
	cfg, err := config.Load(cfgPath, checkDefaults(), override)
	if err != nil {
		return usageError{err}
	}
	setMemoryLimit(cfg)
	logger, alog := newDaemonLogger(cfg)
	defer closeDaemonLogger(alog) // deferred first, so it runs last
	d, err := openDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer d.close()
	alog.SetObserver(d.metrics)

	srv, lns, err := d.listen()
	if err != nil {
		return err
	}
	go func() {
		for range hup {
			// A panic while building the new checks (a parser fed the
			// edited file) fails this reload, as a bad file does.
			if err := panics.Call(func() error { d.reload(ctx, cfgPath, override); return nil }); err != nil {
				logger.Error("reload failed, keeping the running config", "err", err)
			}
		}
	}()
	return serveUntilDone(ctx, srv, lns, logger)
}

// logFlushTimeout bounds the wait at exit for queued log records: a sink
// still stuck then loses them rather than keeping the daemon alive.
const logFlushTimeout = 2 * time.Second

// newDaemonLogger is serve's logger. Records reach stderr through
// asynclog's queue, so a stuck stderr costs log lines, never a reply
// (Postfix waits only smtpd_policy_service_timeout for one, postconf(5)),
// and through its buffer, so a busy daemon writes its decision lines
// many to a write(2).
func newDaemonLogger(cfg *config.Config) (*slog.Logger, *asynclog.Handler) {
	h := asynclog.NewBuffered(os.Stderr, func(w io.Writer) slog.Handler { return cfg.Logger(w).Handler() },
		asynclog.Options{})
	return slog.New(h), h
}

// closeDaemonLogger writes what the log queue still holds, for at most
// logFlushTimeout.
func closeDaemonLogger(h *asynclog.Handler) {
	ctx, cancel := context.WithTimeout(context.Background(), logFlushTimeout)
	defer cancel()
	_ = h.Close(ctx) // an error means stderr is stuck: nowhere to say so
}

// serveUntilDone runs the server on every listener until ctx ends
// (SIGTERM/SIGINT), then drains. A listener failing is fatal.
func serveUntilDone(ctx context.Context, srv *policy.Server, lns []net.Listener, logger *slog.Logger) error {
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); !errors.Is(err, policy.ErrServerClosed) {
				errc <- err
			}
		}()
		logger.Info("listening", "addr", ln.Addr().String())
	}
	notifySystemd(logger, sdnotify.Ready)
	var err error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-errc:
		logger.Error("listener failed", "err", err)
	}
	notifySystemd(logger, sdnotify.Stopping)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		logger.Warn("shutdown did not finish cleanly", "err", serr)
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// notifySystemd tells systemd the daemon's state when it runs under a
// unit of Type=notify (contrib/systemd/mxpolicyd.service), so that
// "systemctl start" returns, and units ordered after it (postfix) start,
// once every listener accepts; elsewhere it does nothing.
func notifySystemd(logger *slog.Logger, state string) {
	if _, err := sdnotify.Send(state); err != nil {
		logger.Warn("could not tell systemd the daemon's state", "state", state, "err", err)
	}
}

// setMemoryLimit applies memory_limit_mib as the runtime's soft memory
// limit, at start and on every reload; 0 restores the runtime's default,
// no limit. GOMEMLIMIT in the environment wins, as the runtime documents
// for its own setting (runtime package, "Environment Variables").
func setMemoryLimit(cfg *config.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(math.MaxInt64)
	if cfg.MemoryLimitMiB > 0 {
		limit = int64(cfg.MemoryLimitMiB) << 20
	}
	debug.SetMemoryLimit(limit)
}
