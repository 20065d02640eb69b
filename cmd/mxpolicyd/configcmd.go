package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/dnsbl"
	"github.com/mxpolicyd/mxpolicyd/internal/resolver"
	"github.com/mxpolicyd/mxpolicyd/whitelist"
)

func newConfigCheckCmd(g *globalOpts) *cobra.Command {
	var probe bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the config file and print the effective config, secrets redacted",
		Long: `Load the config file (--config), apply defaults and $` + config.EnvDatabase + `,
validate every key, read the whitelist files it names (as serve does at
start and on each reload), and print the effective configuration as YAML
with the database password and DNS list secrets (Spamhaus DQS keys, zones
of lists given a name) redacted. Exits 2 naming the bad key, or the
missing file or bad file:line, if invalid.

With --probe, also run the DNS lists' self-check once through dns.server:
each list is asked about its RFC 5782 section 5 test points (127.0.0.2 must
be listed, 127.0.0.1 must not; test and invalid for domain lists), and its
state is printed after the config as YAML comments: healthy, unhealthy and
why, not checked (self_check: false), or unknown when no answer came. Exits 1
if any list is unhealthy or unknown.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigCheck(cmd.Context(), cmd.OutOrStdout(), g.configPath, probe)
		},
	}
	cmd.Flags().BoolVar(&probe, "probe", false, "also query each DNS list's test points and print its state")
	return cmd
}

// runConfigCheck prints the effective config and, with probe, the DNS
// lists' self-check.
func runConfigCheck(ctx context.Context, w io.Writer, path string, probe bool) error {
	cfg, err := config.Load(path, checkDefaults(), nil)
	if err != nil {
		return usageError{err}
	}
	if err := checkFiles(ctx, cfg); err != nil {
		return usageError{err}
	}
	out, err := cfg.YAML()
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return err // a full disk or a closed pipe: not a success
	}
	if !probe {
		return nil
	}
	return probeLists(ctx, w, cfg)
}

// checkFiles reads the files the config names, as serve does at start and
// on each reload: the whitelist's, when the check is on. A file missing or
// with a bad line fails serve, so it fails the check too, naming the
// file:line.
func checkFiles(ctx context.Context, cfg *config.Config) error {
	if !cfg.Checks[whitelist.Name].On() {
		return nil
	}
	_, err := whitelist.New(ctx, cfg.Whitelist, whitelist.Options{})
	return err
}

// probeLists runs the self-check of dnsbl/selfcheck.go once and prints
// each list's state as a YAML comment, so the output stays the config.
func probeLists(ctx context.Context, w io.Writer, cfg *config.Config) error {
	if len(cfg.DNSBL.Lists) == 0 {
		fmt.Fprintln(w, "# dnsbl self-check: no lists configured")
		return nil
	}
	r, err := resolver.New(cfg.DNS)
	if err != nil {
		return err
	}
	dc := cfg.DNSBL
	if dc.SelfCheckInterval == 0 {
		// Asked for explicitly: probe even where serve would not.
		dc.SelfCheckInterval = dnsbl.DefaultConfig().SelfCheckInterval
	}
	c, err := dnsbl.New(dc, r, dnsbl.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "# dnsbl self-check (RFC 5782 §5 test points) via", r.Server()+":")
	bad := 0
	for _, h := range c.Probe(ctx) {
		fmt.Fprintln(w, "#  ", h)
		if h.State == dnsbl.Unhealthy || h.State == dnsbl.Unknown {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("config check: %d DNS list(s) unhealthy or not answering", bad)
	}
	return nil
}
