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
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mxpolicyd:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
