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
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

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
		var re *endpoints.RelayError
		if errors.As(err, &re) {
			fmt.Fprintf(os.Stderr, "mtls client: relay status %d: %v\n", re.Status, err)
		} else {
			fmt.Fprintln(os.Stderr, "mtls client:", err)
		}
		os.Exit(1)
	}
}

func run(relay, name, client, certs, relayCA, msg string, timeout time.Duration) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "client.pem"), filepath.Join(certs, "client-key.pem"))
	if err != nil {
		return err
	}
	roots, err := loadPool(filepath.Join(certs, "ca.pem"))
	if err != nil {
		return err
	}
	if relayCA == "" {
		relayCA = filepath.Join(certs, "ca.pem")
	}
	relayRoots, err := loadPool(relayCA)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// ServerName left empty: the dialer takes the server's name, which
	// the server's certificate must cover.
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}
	d := endpoints.NewRelayMTLSDialer(relay, client,
		endpoints.WithRelayTLS(&tls.Config{RootCAs: relayRoots})) // used for https:// only
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", name, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	dialed := time.Since(start)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	st := c.(*tls.Conn).ConnectionState()

	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// Half-close: a TLS close_notify, which the server reads as EOF. It
	// echoes everything and half-closes in turn, which ends our read.
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	// Over TLS 1.3 a server that refuses our certificate says so here,
	// with an alert: the client's handshake ends before the server checks.
	echo, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	rtt := time.Since(start)

	fmt.Printf("echo: %s\n", echo)
	fmt.Printf("server certificate %q verified, %s; dial %v, round trip %v\n",
		st.PeerCertificates[0].Subject.CommonName, tls.VersionName(st.Version),
		dialed.Round(time.Microsecond), rtt.Round(time.Microsecond))
	if string(echo) != msg {
		return fmt.Errorf("echo mismatch: sent %d bytes %q, got %d bytes %q", len(msg), msg, len(echo), echo)
	}
	return nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
