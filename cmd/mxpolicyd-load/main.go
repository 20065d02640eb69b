// Command mxpolicyd-load sends Postfix policy requests to a running
// mxpolicyd over persistent connections, like smtpd processes do, and
// reports replies by action, errors, throughput and latency. It is for
// measuring, on loopback: see docs/PERFORMANCE.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainCode(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainCode parses args, runs, prints; 2 is a usage error, 1 a run in
// which nothing was answered.
func mainCode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opt, out, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	res, err := run(ctx, opt)
	if err != nil {
		fmt.Fprintln(stderr, "mxpolicyd-load:", err)
		return 2
	}
	switch out {
	case outJSON:
		err = res.writeJSON(stdout)
	case outSummary:
		err = res.writeSummary(stdout)
	default:
		err = res.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mxpolicyd-load:", err)
		return 1
	}
	if opt.conns > 0 && res.Answered == 0 {
		return 1
	}
	return 0
}

// Output formats: the text report, JSON, or one summary line for scripts.
const (
	outText = iota
	outJSON
	outSummary
)

func parseFlags(args []string, stderr io.Writer) (options, int, error) {
	var o options
	var asJSON, summary bool
	fs := flag.NewFlagSet("mxpolicyd-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:10040", "mxpolicyd to load: host:port on loopback, or unix:/path")
	fs.IntVar(&o.conns, "conns", 50, "persistent connections sending requests (smtpd processes)")
	fs.IntVar(&o.idleConns, "idle-conns", 0, "extra connections opened first and held idle for the run")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "stop after this long (0: only -requests bounds the run)")
	fs.Int64Var(&o.requests, "requests", 0, "stop after this many requests (0: only -duration bounds the run)")
	fs.IntVar(&o.pools.clients, "clients", 1000, "distinct clients, each its own /24 (up to 65536)")
	fs.IntVar(&o.pools.senders, "senders", 1000, "distinct envelope senders, each its own domain")
	fs.IntVar(&o.pools.recipients, "recipients", 1000, "distinct recipients")
	fs.IntVar(&o.perMsg, "rcpts-per-message", 1, "RCPT requests per message (same client, sender and instance)")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed: the same seed sends the same requests on each connection")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "wait this long for a reply (Postfix's timeout=10s)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow a target that is not loopback")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&summary, "summary", false, "print the result as one line of key=value pairs (scripts/bench.sh reads it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mxpolicyd-load [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, outText, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mxpolicyd-load: unexpected argument %q\n", fs.Arg(0))
		return o, outText, flag.ErrHelp
	}
	switch {
	case asJSON && summary:
		fmt.Fprintln(stderr, "mxpolicyd-load: -json and -summary exclude each other")
		return o, outText, flag.ErrHelp
	case asJSON:
		return o, outJSON, nil
	case summary:
		return o, outSummary, nil
	}
	return o, outText, nil
}
