package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxpolicyd/mxpolicyd/config"
	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/quote"
	"github.com/mxpolicyd/mxpolicyd/policy"
)

// checkOpts describe one request on the command line.
type checkOpts struct {
	stdin    bool
	client   string
	name     string
	helo     string
	sender   string
	rcpt     string
	sasl     string
	state    string
	database string
	dns      string
}

func newCheckCmd(g *globalOpts) *cobra.Command {
	o := &checkOpts{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Explain the decision for one request, writing nothing",
		Long: `Evaluate one policy request with the running configuration and print the
action Postfix would get, the check that decided it and why, and what every
check concluded. Nothing is written: greylisting is evaluated read-only, and
no decision is logged to the database. Answer "why was this mail deferred or
rejected?" with it.

The request comes from flags, or with --stdin as a request block in the policy
protocol (name=value lines; Postfix's own format).`,
		Example: `  mxpolicyd check --client-address 192.0.2.10 --client-name mail.example.org \
      --helo mail.example.org --sender alice@example.org --recipient bob@example.net
  printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\n\n' | mxpolicyd check --stdin`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), g.configPath, o, cmd)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.stdin, "stdin", false, "read a request block from standard input")
	f.StringVar(&o.client, "client-address", "", "client IP address")
	f.StringVar(&o.name, "client-name", "unknown", "verified client hostname, or unknown")
	f.StringVar(&o.helo, "helo", "", "HELO/EHLO name")
	f.StringVar(&o.sender, "sender", "", "envelope sender (empty: the null sender)")
	f.StringVar(&o.rcpt, "recipient", "", "envelope recipient")
	f.StringVar(&o.sasl, "sasl-username", "", "SASL login name, if authenticated")
	f.StringVar(&o.state, "protocol-state", "RCPT", "SMTP stage")
	f.StringVar(&o.database, "database", "", "database to read (key database)")
	f.StringVar(&o.dns, "dns", "", "DNS server host:port (key dns.server)")
	return cmd
}

// requestFlags are the flags that make a request; --stdin reads one whole.
var requestFlags = []string{"client-address", "client-name", "helo", "sender", "recipient", "sasl-username", "protocol-state"}

// protocolStates are the values of protocol_state Postfix sends
// (SMTPD_POLICY_README, "Protocol description").
var protocolStates = []string{"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}

func (o *checkOpts) request(cmd *cobra.Command) (*policy.Request, error) {
	if o.stdin {
		for _, name := range requestFlags {
			if cmd.Flags().Changed(name) {
				return nil, usageError{fmt.Errorf("--%s: --stdin reads the whole request; give it there, not as a flag", name)}
			}
		}
		return readStdinRequest(cmd.InOrStdin())
	}
	if !slices.Contains(protocolStates, strings.ToUpper(o.state)) {
		return nil, usageError{fmt.Errorf("--protocol-state %s: want one of %s", quote.Short(o.state), strings.Join(protocolStates, ", "))}
	}
	if o.rcpt == "" || o.client == "" {
		return nil, usageError{fmt.Errorf("--client-address and --recipient are required (or use --stdin)")}
	}
	addr, err := netip.ParseAddr(o.client)
	if err != nil {
		return nil, usageError{fmt.Errorf("--client-address: %w", err)}
	}
	return &policy.Request{
		Request: "smtpd_access_policy", ProtocolState: strings.ToUpper(o.state), ProtocolName: "ESMTP",
		ClientAddress: addr.Unmap(), ClientName: o.name, ReverseName: o.name, HeloName: o.helo,
		Sender: o.sender, Recipient: o.rcpt, SASLUsername: o.sasl, Instance: "check",
	}, nil
}

// readStdinRequest reads one request block as Postfix sends it. What the
// user gave is wrong (exit 2) when it is not one; a failing read is not.
func readStdinRequest(in io.Reader) (*policy.Request, error) {
	br := bufio.NewReaderSize(in, policy.DefaultLimits.MaxLine+64)
	req, err := policy.ReadRequest(br, policy.DefaultLimits)
	switch {
	case errors.Is(err, io.EOF):
		return nil, usageError{errors.New("--stdin: no request: the input is empty; end the block with an empty line")}
	case errors.Is(err, policy.ErrTruncated):
		return nil, usageError{errors.New("--stdin: the request does not end with an empty line")}
	case errors.Is(err, policy.ErrLineTooLong), errors.Is(err, policy.ErrTooManyAttrs), errors.Is(err, policy.ErrRequestTooBig),
		errors.Is(err, policy.ErrMalformed), errors.Is(err, policy.ErrNotAccessQuery):
		return nil, usageError{fmt.Errorf("--stdin: %w", err)}
	case err != nil:
		return nil, fmt.Errorf("reading request from stdin: %w", err)
	}
	return req, nil
}

func runCheck(ctx context.Context, cfgPath string, o *checkOpts, cmd *cobra.Command) error {
	cfg, err := config.Load(cfgPath, checkDefaults(), func(c *config.Config) {
		if o.database != "" {
			c.Database = o.database
		}
		if o.dns != "" {
			c.DNS.Server = o.dns
		}
	})
	if err != nil {
		return usageError{err}
	}
	req, err := o.request(cmd)
	if err != nil {
		return err
	}
	logger := cfg.Logger(cmd.ErrOrStderr())
	w, closeAll, err := openReadOnly(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	steps, err := w.steps(ctx, cfg)
	if err != nil {
		return err
	}
	offset, err := db.MeasureClockOffset(ctx, w.db) // what the daemon's engine adds (daemon.go)
	if err != nil {
		return fmt.Errorf("database %s: %w", db.Redact(cfg.Database), err)
	}
	e := policy.NewEngine(policy.Options{Budget: cfg.RequestTimeout, SkipSASL: cfg.SkipSASL,
		Logger: slog.New(slog.DiscardHandler), ClockOffset: func() time.Duration { return offset }}, steps)
	printDecision(cmd.OutOrStdout(), e.Evaluate(ctx, req, nil))
	return nil
}

func printDecision(w io.Writer, d *policy.Decision) {
	fmt.Fprintf(w, "action:   %s\n", d.Action)
	fmt.Fprintf(w, "check:    %s\n", orDash(d.Check))
	fmt.Fprintf(w, "reason:   %s\n", orDash(d.Reason))
	if d.Delay > 0 {
		fmt.Fprintf(w, "delay:    %s\n", d.Delay)
	}
	f := d.Facts
	if f.Whitelist != "" {
		fmt.Fprintf(w, "whitelist: %s\n", f.Whitelist)
	}
	if f.DNSScore != 0 || len(f.DNSListed) > 0 {
		fmt.Fprintf(w, "dns score: %g (%s)\n", f.DNSScore, strings.Join(f.DNSListed, ", "))
	}
	if f.SPF != "" {
		fmt.Fprintf(w, "spf:      %s %s\n", f.SPF, f.SPFDomain)
	}
	for _, t := range d.Timings {
		fmt.Fprintf(w, "ran:      %-9s %s\n", t.Check, t.Duration.Round(time.Microsecond))
	}
	for _, e := range d.Errors {
		fmt.Fprintf(w, "error:    %s: %v (%s)\n", e.Check, e.Err, e.Kind)
	}
	fmt.Fprintf(w, "took:     %s\n", d.Duration.Round(time.Microsecond))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
