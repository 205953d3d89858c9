// Command client dials the MTLS echo server by name through a clusterlink
// relay, runs a TLS handshake with it end to end (verifying the server's
// certificate against the demo CA and presenting its own), sends one
// message, half-closes, and checks the echo.
//
// Run the example in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode        # 1: a relay on 127.0.0.1:8080
//	go run ./examples/mtls/gencerts         # 2: certificates into ./certs
//	go run ./examples/mtls/server           # 2: the MTLS echo server
//	go run ./examples/mtls/client           # 3: this client
//
// With TLS to the relay as well (see gencerts for the relay's flags), add
// -relay https://127.0.0.1:8443.
//
// Flags:
//
//	-relay     the relay's address (default 127.0.0.1:8080); https://
//	           speaks TLS to the relay, trusting -relay-ca
//	-name      the server's name on the relay, which its certificate must
//	           cover (default secure-echo)
//	-client    the name this client gives the relay (default mtls-client)
//	-certs     the directory gencerts wrote (default ./certs): client.pem,
//	           client-key.pem, and ca.pem, which must have signed the
//	           server's certificate
//	-relay-ca  PEM file of the CAs that sign an https:// relay's certificate
//	           (default: ca.pem in -certs)
//	-msg       the message to send (default "hello, end to end")
//	-timeout   bound on the whole exchange (default 15s)
//
// It prints the echo and the server's certificate, and exits 0 if the echo
// matches the message exactly, 1 otherwise.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
	"github.com/clusterlink-relay/relay/examples/internal/pki"
)

// main parses the flags and runs one exchange.
func main() {
	relay := flag.String("relay", "127.0.0.1:8080", "`address` of the relay: host:port, http://host:port or https://host:port")
	name := flag.String("name", "secure-echo", "`name` of the server on the relay; its certificate must cover it")
	client := flag.String("client", "mtls-client", "`name` this client gives the relay")
	certs := flag.String("certs", "./certs", "`directory` of client.pem, client-key.pem and ca.pem (see gencerts)")
	relayCA := flag.String("relay-ca", "", "PEM `file` of the CAs of an https:// relay (default: ca.pem in -certs)")
	msg := flag.String("msg", "hello, end to end", "`message` to send")
	timeout := flag.Duration("timeout", 15*time.Second, "bound on the dial and the echo")
	flag.Parse()
	if err := run(*relay, *name, *client, *certs, *relayCA, *msg, *timeout); err != nil {
		echo.Exit("mtls client", err) // names the status of an *endpoints.RelayError
	}
}

// run loads the certificates in certs, dials name through relay as
// client with MTLS end to end, sends msg, and checks its echo, all within
// timeout.
func run(relay, name, client, certs, relayCA, msg string, timeout time.Duration) error {
	// client.pem and client-key.pem, ca.pem for the server, and the
	// relay's CAs.
	files, err := pki.Load(certs, "client", relayCA)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// ServerName left empty: the dialer takes the server's name, which
	// the server's certificate must cover.
	cfg := &tls.Config{Certificates: []tls.Certificate{files.Cert}, RootCAs: files.CAs}
	d := endpoints.NewRelayMTLSDialer(relay, client,
		endpoints.WithRelayTLS(&tls.Config{RootCAs: files.RelayCAs})) // used for https:// only
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", name, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	dialed := time.Since(start)
	st := c.(*tls.Conn).ConnectionState()

	// Send msg, half-close with a TLS close_notify, and read the echo to
	// EOF, within ctx's deadline. Over TLS 1.3 a server that refuses our
	// certificate says so in the read, with an alert: the client's
	// handshake ends before the server checks.
	got, err := echo.Exchange(ctx, c, msg)
	if err != nil {
		return err
	}
	rtt := time.Since(start)

	fmt.Printf("echo: %s\n", got)
	fmt.Printf("server certificate %q verified, %s; dial %v, round trip %v\n",
		st.PeerCertificates[0].Subject.CommonName, tls.VersionName(st.Version),
		dialed.Round(time.Microsecond), rtt.Round(time.Microsecond))
	return echo.Check(msg, got)
}
