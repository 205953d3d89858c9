package main

import (
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
)

// pprofFlag registers -pprof on fs.
func pprofFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin listener (needs -admin-listen; off by default: profiles show names and addresses)")
}

// errPprofNoAdmin is -pprof's error without an admin listener.
var errPprofNoAdmin = errors.New("-pprof needs -admin-listen: the profiles are served on the admin listener")

// pprofWriteTimeout bounds an admin response with -pprof: longer than the
// longest CPU profile or trace one would ask for (?seconds=60).
const pprofWriteTimeout = 90 * time.Second

// serveAdmin serves the node's admin routes on ln, and the pprof routes
// beside them when withPprof is set, and returns a func that stops
// serving. Without withPprof it is Node.ServeAdmin, which Shutdown and
// Close stop themselves.
func serveAdmin(node *relaynode.Node, ln net.Listener, withPprof bool) (stop func()) {
	if !withPprof {
		go func() { _ = node.ServeAdmin(ln) }()
		return func() {}
	}
	srv := &http.Server{
		Handler:           pprofHandler(node.AdminHandler()),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      pprofWriteTimeout,
		IdleTimeout:       60 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}

// pprofHandler returns admin with the net/http/pprof routes added under
// /debug/pprof/.
func pprofHandler(admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", admin)
	return mux
}
