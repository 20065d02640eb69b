package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// idleConns are connections that send nothing, like smtpd processes
// waiting for a client: they measure what an open connection costs the
// daemon, and whether it keeps them (max_connections, idle_timeout).
type idleConns struct {
	conns   []net.Conn
	failed  int
	dropped atomic.Int64 // closed by the server while we held them
	wg      sync.WaitGroup
}

// IdleResult is what happened to the idle connections.
type IdleResult struct {
	Opened         int   `json:"opened"`
	DialFailed     int   `json:"dial_failed"`
	ClosedByServer int64 `json:"closed_by_server"`
}

func openIdle(ctx context.Context, addr string, n int) *idleConns {
	ic := &idleConns{}
	for range n {
		nc, err := dial(ctx, addr)
		if err != nil {
			ic.failed++
			continue
		}
		ic.conns = append(ic.conns, nc)
		ic.wg.Add(1)
		go ic.watch(nc)
	}
	return ic
}

// watch waits for the server to close nc; a read returns only then, or
// when close ends the run.
func (ic *idleConns) watch(nc net.Conn) {
	defer ic.wg.Done()
	var b [1]byte
	if _, err := nc.Read(b[:]); !errors.Is(err, net.ErrClosed) {
		ic.dropped.Add(1)
	}
}

func (ic *idleConns) close() IdleResult {
	// Count drops before closing, so our own close is not one.
	res := IdleResult{Opened: len(ic.conns), DialFailed: ic.failed}
	for _, nc := range ic.conns {
		nc.Close()
	}
	ic.wg.Wait()
	res.ClosedByServer = ic.dropped.Load()
	return res
}
