// Command mxpolicyd is a Postfix policy-delegation daemon: greylisting,
// DNS lists, SPF and whitelists behind one check_policy_service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels ctx: serve shuts down in order, a command
	// stops its database work. One blocked where ctx cannot reach (a read
	// of stdin, a FIFO) would then ignore every later signal; so the
	// first one also gives the signals back their default, and a second
	// Ctrl-C or SIGTERM ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mxpolicyd:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
