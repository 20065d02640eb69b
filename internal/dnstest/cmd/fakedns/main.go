// Command fakedns serves a zone file from an in-process authoritative
// server on 127.0.0.1, for the end-to-end rig: mxpolicyd's --dns flag
// points at the address it prints. The file is in RFC 1035 master format
// ($ORIGIN, $TTL) plus behaviour lines for failure tests:
//
//	!servfail name    answer SERVFAIL
//	!refused name     answer REFUSED
//	!delay name 5s    answer after a delay
//	!truncate name    answer UDP with TC set (clients retry over TCP)
//
// It prints the address ("127.0.0.1:PORT") on stdout, writes it to
// -addr-file if given, and serves until SIGINT or SIGTERM.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/mxpolicyd/mxpolicyd/internal/dnstest"
)

func main() {
	zone := flag.String("zone", "", "zone file to serve (required)")
	addrFile := flag.String("addr-file", "", "also write the listening address to this file")
	flag.Parse()
	if err := run(*zone, *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "fakedns:", err)
		os.Exit(1)
	}
}

func run(zone, addrFile string) error {
	f, err := os.Open(zone)
	if err != nil {
		return err
	}
	defer f.Close()
	srv, err := dnstest.Start()
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := load(srv, f, zone); err != nil {
		return err
	}
	fmt.Println(srv.Addr())
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(srv.Addr()+"\n"), 0o644); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// load splits behaviour lines from zone data and applies both.
func load(srv *dnstest.Server, r io.Reader, name string) error {
	var zone strings.Builder
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "!") {
			zone.WriteString(sc.Text() + "\n")
			continue
		}
		if err := behaviour(srv, strings.Fields(line)); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	zp := dns.NewZoneParser(strings.NewReader(zone.String()), "", name)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		srv.AddRR(rr)
	}
	return zp.Err()
}

func behaviour(srv *dnstest.Server, f []string) error {
	switch {
	case len(f) == 2 && f[0] == "!servfail":
		srv.SetRcode(f[1], dns.RcodeServerFailure)
	case len(f) == 2 && f[0] == "!refused":
		srv.SetRcode(f[1], dns.RcodeRefused)
	case len(f) == 2 && f[0] == "!truncate":
		srv.SetTruncate(f[1], true)
	case len(f) == 3 && f[0] == "!delay":
		d, err := time.ParseDuration(f[2])
		if err != nil {
			return err
		}
		srv.SetDelay(f[1], d)
	default:
		return fmt.Errorf("unknown behaviour line %q", strings.Join(f, " "))
	}
	return nil
}
