package metrics

import (
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
)

// PProfPath is where Config.PProf serves the runtime profiles.
const PProfPath = "/debug/pprof/"

// pprofHandler serves the runtime profiles of net/http/pprof (the index
// with heap, goroutine, allocs, block, mutex and threadcreate; profile,
// trace, symbol) to loopback clients only: a profile shows memory
// contents and a CPU profile costs CPU while it runs, so even on a
// metrics listener reachable from a management network the profiles stay
// on the host (take them over ssh, e.g. `go tool pprof
// http://127.0.0.1:9430/debug/pprof/heap` there). The handlers are
// mounted here rather than on http.DefaultServeMux, which the metrics
// listener does not serve. cmdline is 404 although the index still lists
// it: it is os.Args, with --database and its password, and behind a local
// reverse proxy every client is loopback.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PProfPath, pprof.Index)
	mux.HandleFunc(PProfPath+"cmdline", http.NotFound)
	mux.HandleFunc(PProfPath+"profile", pprof.Profile)
	mux.HandleFunc(PProfPath+"symbol", pprof.Symbol)
	mux.HandleFunc(PProfPath+"trace", pprof.Trace)
	return loopbackOnly(mux)
}

// loopbackOnly answers 403 to a client whose address is not loopback.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		a, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !a.Unmap().IsLoopback() {
			http.Error(w, "profiles are served to loopback clients only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
