// Command server is an echo server that listens on a clusterlink relay
// instead of a local port: it registers a name, and every connection dialed
// to that name through the relay is echoed back byte for byte.
//
// Run it with a relay and a client, in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode
//	go run ./examples/echo/server
//	go run ./examples/echo/client
//
// Flags:
//
//	-relay  the relay's URL (default http://127.0.0.1:8080)
//	-name   the name to register (default echo)
//
// It logs each accepted connection to stderr. SIGINT or SIGTERM closes the
// listener and the connections in flight, and the server exits 0.
package main

import (
	"flag"
	"log/slog"
	"net"
	"os"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
)

// main parses the flags and serves until a signal.
func main() {
	relay := flag.String("relay", "http://127.0.0.1:8080", "`URL` of the relay: http://host:port or host:port")
	name := flag.String("name", "echo", "`name` to register on the relay")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *relay, *name); err != nil {
		log.Error("echo server failed", slog.Any("err", err))
		os.Exit(1)
	}
}

// run registers name on relay and echoes every connection until SIGINT
// or SIGTERM.
func run(log *slog.Logger, relay, name string) error {
	ln, err := endpoints.ListenRelay("tcp", name, relay, echo.LogState(log)) // a line per re-registration
	if err != nil {
		return err
	}
	defer ln.Close() // safe after Serve's Close on a signal
	log.Info("listening", slog.String("addr", ln.Addr().String()))

	// Serve echoes each accepted conn until SIGINT or SIGTERM closes ln.
	// Failed callbacks and lost streams never reach Accept (the listener
	// re-registers by itself): Serve fails only on a permanent refusal,
	// such as the name taken by someone else.
	return echo.Serve(log, ln, func(c net.Conn) []slog.Attr {
		attrs := []slog.Attr{slog.String("remote", c.RemoteAddr().String())}
		if rc, ok := c.(*endpoints.Conn); ok {
			attrs = append(attrs, slog.String("client", rc.ClientName()))
		}
		return attrs
	})
}
