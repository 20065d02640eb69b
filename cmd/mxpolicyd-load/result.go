package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// result is one run's outcome; the JSON names are stable for scripts.
type result struct {
	Addr      string           `json:"addr"`
	Conns     int              `json:"conns"`
	Elapsed   float64          `json:"elapsed_s"`
	Sent      int64            `json:"sent"`
	Answered  int64            `json:"answered"`
	Replies   map[string]int64 `json:"replies"`
	Errors    map[string]int64 `json:"errors"`
	PerSecond float64          `json:"req_per_s"`
	Latency   latency          `json:"latency_ms"`
	Idle      IdleResult       `json:"idle"`
}

type latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(opt options, elapsed time.Duration, stats []*workerStats) *result {
	res := &result{Addr: opt.addr, Conns: opt.conns, Elapsed: elapsed.Seconds(),
		Replies: map[string]int64{}, Errors: map[string]int64{}}
	for _, v := range verbs {
		res.Replies[v] = 0
	}
	var lat []time.Duration
	for _, st := range stats {
		res.Sent += st.sent
		for k, n := range st.replies {
			res.Replies[k] += n
			res.Answered += n
		}
		for k, n := range st.errs {
			res.Errors[k] += n
		}
		lat = append(lat, st.lat...)
	}
	if elapsed > 0 {
		res.PerSecond = float64(res.Answered) / elapsed.Seconds()
	}
	res.Latency = percentiles(lat)
	return res
}

// percentiles uses the nearest-rank method: p99 is a latency that 99 %
// of replies did not exceed.
func percentiles(lat []time.Duration) latency {
	if len(lat) == 0 {
		return latency{}
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := max(int(q*float64(len(lat))+0.999999)-1, 0)
		return ms(lat[min(i, len(lat)-1)])
	}
	return latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(lat[len(lat)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *result) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *result) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target      %s, %d connections, %d idle\n", r.Addr, r.Conns, r.Idle.Opened)
	fmt.Fprintf(&b, "elapsed     %.2f s\n", r.Elapsed)
	fmt.Fprintf(&b, "requests    %d sent, %d answered\n", r.Sent, r.Answered)
	fmt.Fprintf(&b, "replies    ")
	for _, v := range verbs {
		fmt.Fprintf(&b, " %s %d", v, r.Replies[v])
	}
	fmt.Fprintf(&b, "\nerrors     ")
	for _, k := range []string{"dial", "closed", "timeout", "protocol", "io"} {
		fmt.Fprintf(&b, " %s %d", k, r.Errors[k])
	}
	fmt.Fprintf(&b, "\nthroughput  %.0f req/s\n", r.PerSecond)
	l := r.Latency
	fmt.Fprintf(&b, "latency     p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", l.P50, l.P90, l.P99, l.Max)
	if r.Idle.Opened+r.Idle.DialFailed > 0 {
		fmt.Fprintf(&b, "idle        %d opened, %d dial failures, %d closed by the server\n",
			r.Idle.Opened, r.Idle.DialFailed, r.Idle.ClosedByServer)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSummary prints the result as one line of key=value pairs, for
// scripts (scripts/bench.sh): names are stable, values have no spaces,
// replies are counted by verb and errors are summed.
func (r *result) writeSummary(w io.Writer) error {
	var errs int64
	for _, n := range r.Errors {
		errs += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sent=%d answered=%d errors=%d req_per_s=%.1f", r.Sent, r.Answered, errs, r.PerSecond)
	l := r.Latency
	fmt.Fprintf(&b, " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f", l.P50, l.P90, l.P99, l.Max)
	for _, v := range verbs {
		fmt.Fprintf(&b, " %s=%d", strings.ToLower(v), r.Replies[v])
	}
	fmt.Fprintf(&b, " idle_opened=%d idle_dial_failed=%d idle_closed_by_server=%d elapsed_s=%.3f\n",
		r.Idle.Opened, r.Idle.DialFailed, r.Idle.ClosedByServer, r.Elapsed)
	_, err := io.WriteString(w, b.String())
	return err
}
