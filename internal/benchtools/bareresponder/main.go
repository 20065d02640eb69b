// Command bareresponder is the protocol ceiling of scripts/bench.sh: it
// reads each policy request with policy.ReadRequest, the daemon's own
// parser, and answers "action=DUNNO" without deciding, logging or
// recording anything. What mxpolicyd adds on top of this is the cost of
// its checks and its bookkeeping.
//
// It listens on -listen (loopback), prints the address it got, and serves
// until SIGINT or SIGTERM. Connections persist, as Postfix keeps them
// (SMTPD_POLICY_README, "Protocol description").
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mxpolicyd/mxpolicyd/policy"
)

// reply is one answer: the action line, then the empty line that ends it.
var reply = []byte("action=DUNNO\n\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareresponder:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		nc, err := ln.Accept()
		if ctx.Err() != nil {
			return // closed by the signal
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // out of descriptors: wait for a close
			continue
		}
		go serve(nc)
	}
}

// serve answers every request of one connection; a malformed request or
// EOF ends it, as in the daemon.
func serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		if _, err := policy.ReadRequest(br, policy.DefaultLimits); err != nil {
			return
		}
		if _, err := nc.Write(reply); err != nil {
			return
		}
	}
}
