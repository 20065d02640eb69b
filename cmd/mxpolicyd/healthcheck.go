package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
)

// healthTimeout bounds each probe; a container engine's health check
// (HEALTHCHECK --timeout in contrib/compose/Dockerfile) waits a little longer.
const healthTimeout = 3 * time.Second

// newHealthcheckCmd is the container health check: the image is FROM
// scratch, with no shell or curl, so the daemon probes itself. It is
// hidden because only contrib/compose/Dockerfile and docker-compose.yml
// run it.
func newHealthcheckCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:    "healthcheck",
		Short:  "Exit 0 if the configured listeners accept connections",
		Long:   "Connect to every policy listener (then close without a request) and, when metrics.listen is set, GET /readyz. Exit 1 at the first that fails.",
		Hidden: true,
		Args:   args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath, checkDefaults(), nil)
			if err != nil {
				return err
			}
			return healthcheck(cmd.Context(), cfg)
		},
	}
}

// healthcheck dials each listener and probes /readyz. A connection closed
// before any request is a normal end of session for the policy server
// (SMTPD_POLICY_README, "Protocol description"), so no decision is made.
func healthcheck(ctx context.Context, cfg *config.Config) error {
	var d net.Dialer
	for _, l := range cfg.Listen {
		network, addr := "tcp", l
		if p, ok := strings.CutPrefix(l, "unix:"); ok {
			network, addr = "unix", p
		}
		dctx, cancel := context.WithTimeout(ctx, healthTimeout)
		c, err := d.DialContext(dctx, network, addr)
		cancel()
		if err != nil {
			return fmt.Errorf("healthcheck: listen %s: %w", l, err)
		}
		c.Close()
	}
	if !cfg.Metrics.Enabled() {
		return nil
	}
	host, port, _ := net.SplitHostPort(cfg.Metrics.Listen) // validated by config.Load
	if host == "" {
		host = "localhost" // ":9430" listens on every address, loopback included
	}
	return probeReady(ctx, "http://"+net.JoinHostPort(host, port)+"/readyz")
}

func probeReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", url, resp.Status)
	}
	return nil
}
