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
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/clusterlink-relay/relay/endpoints"
)

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

func run(log *slog.Logger, relay, name, certs, relayCA string) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "server.pem"), filepath.Join(certs, "server-key.pem"))
	if err != nil {
		return err
	}
	clientCAs, err := loadPool(filepath.Join(certs, "ca.pem"))
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
	// ClientAuth left zero: ListenMTLS makes it RequireAndVerifyClientCert.
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: clientCAs}
	ln, err := endpoints.ListenMTLS("tcp", name, cfg, relay,
		endpoints.WithRelayTLS(&tls.Config{RootCAs: relayRoots})) // used for https:// only
	if err != nil {
		return err
	}
	defer ln.Close() // safe after the signal handler's Close
	log.Info("listening", slog.String("addr", ln.Addr().String()))

	// The signal handler owns the shutdown: it closes the listener, which
	// ends Accept with net.ErrClosed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info("stopping", slog.String("signal", s.String()))
			ln.Close()
		case <-stop:
		}
	}()
	defer close(stop)

	var live conns
	defer live.closeAndWait()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// Failed callbacks, handshakes and lost streams never reach
			// Accept (the listener re-registers by itself): an error here
			// is a permanent refusal, such as the name taken by someone
			// else.
			return fmt.Errorf("accept: %w", err)
		}
		// Accept returns a *tls.Conn whose handshake is complete: the
		// client's certificate is verified and in its ConnectionState.
		tc := c.(*tls.Conn)
		st := tc.ConnectionState()
		attrs := []any{
			slog.String("cn", st.PeerCertificates[0].Subject.CommonName),
			slog.String("remote", c.RemoteAddr().String()),
			slog.String("tls", tls.VersionName(st.Version)),
		}
		if rc, ok := tc.NetConn().(*endpoints.Conn); ok {
			attrs = append(attrs, slog.String("client", rc.ClientName()))
		}
		log.Info("accepted", attrs...)
		live.run(c, func() { echo(log, c) })
	}
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

// echo copies c back to itself until the client half-closes (a TLS
// close_notify), then half-closes in turn.
func echo(log *slog.Logger, c net.Conn) {
	defer c.Close()
	n, err := io.Copy(c, c)
	if err != nil {
		log.Warn("echo failed", slog.String("remote", c.RemoteAddr().String()), slog.Any("err", err))
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	log.Info("echoed", slog.String("remote", c.RemoteAddr().String()), slog.Int64("bytes", n))
}

// conns tracks the connections being echoed, so that shutdown can close
// them and wait for their goroutines.
type conns struct {
	wg sync.WaitGroup
	mu sync.Mutex // guards m
	m  map[net.Conn]struct{}
}

func (cs *conns) run(c net.Conn, f func()) {
	cs.mu.Lock()
	if cs.m == nil {
		cs.m = make(map[net.Conn]struct{})
	}
	cs.m[c] = struct{}{}
	cs.mu.Unlock()
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		f()
		cs.mu.Lock()
		delete(cs.m, c)
		cs.mu.Unlock()
	}()
}

func (cs *conns) closeAndWait() {
	cs.mu.Lock()
	for c := range cs.m {
		c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}
