// Command client dials an echo server by name through a clusterlink relay,
// sends one message, half-closes, and checks that the echo matches.
//
// Run it with a relay and the echo server, in three terminals from the
// module root:
//
//	go run ./relaynode/cmd/relaynode
//	go run ./examples/echo/server
//	go run ./examples/echo/client
//
// Flags:
//
//	-relay    the relay's address (default 127.0.0.1:8080)
//	-name     the server's name on the relay (default echo)
//	-client   the name this client gives the relay (default echo-client)
//	-msg      the message to send (default "hello through the relay")
//	-timeout  bound on the whole exchange (default 15s)
//
// It prints the echo and the round-trip time, and exits 0 if the echo
// matches the message exactly, 1 otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
)

// main parses the flags and runs one exchange.
func main() {
	relay := flag.String("relay", "127.0.0.1:8080", "`address` of the relay: host:port or http://host:port")
	name := flag.String("name", "echo", "`name` of the echo server on the relay")
	client := flag.String("client", "echo-client", "`name` this client gives the relay")
	msg := flag.String("msg", "hello through the relay", "`message` to send")
	timeout := flag.Duration("timeout", 15*time.Second, "bound on the dial and the echo")
	flag.Parse()
	if err := run(*relay, *name, *client, *msg, *timeout); err != nil {
		echo.Exit("echo client", err) // names the status of an *endpoints.RelayError
	}
}

// run dials name through relay as client, sends msg, and checks its
// echo, all within timeout.
func run(relay, name, client, msg string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	c, err := endpoints.NewRelayDialer(relay, client).DialContext(ctx, "tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	dialed := time.Since(start)

	// Send msg, half-close, and read the echo to EOF, within ctx's deadline.
	got, err := echo.Exchange(ctx, c, msg)
	if err != nil {
		return err
	}
	rtt := time.Since(start)

	fmt.Printf("echo: %s\n", got)
	fmt.Printf("dial %v, round trip %v (%d bytes, via %s)\n", dialed.Round(time.Microsecond), rtt.Round(time.Microsecond), len(got), c.RemoteAddr())
	return echo.Check(msg, got)
}
