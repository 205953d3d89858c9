// Command server is an echo server that listens on a clusterlink relay with
// TLS end to end: ListenMTLS registers its name, and every client must
// present a certificate signed by the demo CA. The relay splices the TLS
// records and never sees the plaintext.
//
// Run the example in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode        # 1: a relay on 127.0.0.1:8080
//	go run ./examples/mtls/gencerts         # 2: certificates into ./certs
//	go run ./examples/mtls/server           # 2: this server
//	go run ./examples/mtls/client           # 3: an MTLS client
//
// With TLS to the relay as well (see gencerts for the relay's flags), add
// -relay https://127.0.0.1:8443.
//
// Flags:
//
//	-relay     the relay's URL (default http://127.0.0.1:8080); https://
//	           speaks TLS to the relay, trusting -relay-ca
//	-name      the name to register, which server.pem must cover
//	           (default secure-echo)
//	-certs     the directory gencerts wrote (default ./certs): server.pem,
//	           server-key.pem, and ca.pem, which must have signed the
//	           clients' certificates
//	-relay-ca  PEM file of the CAs that sign an https:// relay's certificate
//	           (default: ca.pem in -certs)
//
// It logs each accepted connection with the client's certificate common
// name and address. SIGINT or SIGTERM closes the listener and the
// connections in flight, and the server exits 0.
package main

import (
	"crypto/tls"
	"flag"
	"log/slog"
	"net"
	"os"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
	"github.com/clusterlink-relay/relay/examples/internal/pki"
)

// main parses the flags and serves until a signal.
func main() {
	relay := flag.String("relay", "http://127.0.0.1:8080", "`URL` of the relay: http://host:port, https://host:port or host:port")
	name := flag.String("name", "secure-echo", "`name` to register on the relay; server.pem must cover it")
	certs := flag.String("certs", "./certs", "`directory` of server.pem, server-key.pem and ca.pem (see gencerts)")
	relayCA := flag.String("relay-ca", "", "PEM `file` of the CAs of an https:// relay (default: ca.pem in -certs)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *relay, *name, *certs, *relayCA); err != nil {
		log.Error("mtls server failed", slog.Any("err", err))
		os.Exit(1)
	}
}

// run loads the certificates in certs, registers name on relay with MTLS
// end to end, and echoes every connection until SIGINT or SIGTERM.
func run(log *slog.Logger, relay, name, certs, relayCA string) error {
	// server.pem and server-key.pem, ca.pem for the clients, and the
	// relay's CAs.
	files, err := pki.Load(certs, "server", relayCA)
	if err != nil {
		return err
	}
	// ClientAuth left zero: ListenMTLS makes it RequireAndVerifyClientCert.
	cfg := &tls.Config{Certificates: []tls.Certificate{files.Cert}, ClientCAs: files.CAs}
	ln, err := endpoints.ListenMTLS("tcp", name, cfg, relay,
		endpoints.WithRelayTLS(&tls.Config{RootCAs: files.RelayCAs}), // used for https:// only
		echo.LogState(log)) // a line per re-registration
	if err != nil {
		return err
	}
	defer ln.Close() // safe after Serve's Close on a signal
	log.Info("listening", slog.String("addr", ln.Addr().String()))

	// Serve echoes each accepted conn until SIGINT or SIGTERM closes ln.
	// Failed callbacks, handshakes and lost streams never reach Accept
	// (the listener re-registers by itself): Serve fails only on a
	// permanent refusal, such as the name taken by someone else.
	return echo.Serve(log, ln, func(c net.Conn) []slog.Attr {
		// Accept returns a *tls.Conn whose handshake is complete: the
		// client's certificate is verified and in its ConnectionState.
		tc := c.(*tls.Conn)
		st := tc.ConnectionState()
		attrs := []slog.Attr{
			slog.String("cn", st.PeerCertificates[0].Subject.CommonName),
			slog.String("remote", c.RemoteAddr().String()),
			slog.String("tls", tls.VersionName(st.Version)),
		}
		if rc, ok := tc.NetConn().(*endpoints.Conn); ok {
			attrs = append(attrs, slog.String("client", rc.ClientName()))
		}
		return attrs
	})
}
