package endpoints_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
)

// startExampleRelay starts a relay in process on 127.0.0.1 and returns its
// address and a function that stops it.
func startExampleRelay() (addr string, stop func()) {
	node, err := relaynode.New(relaynode.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()
	return ln.Addr().String(), func() {
		node.Close()
		<-served
	}
}

// A server registers "echo" on the relay and answers one connection; a
// client dials the name and reads its bytes back.
func ExampleListenRelay() {
	relay, stop := startExampleRelay()
	defer stop()

	ln, err := endpoints.ListenRelay("tcp", "echo", "http://"+relay)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println("listening as", ln.Addr().(endpoints.Addr).Name)
	fmt.Println("connected:", ln.(*endpoints.Listener).State().Connected)

	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until the client's half-close
	}()

	c, err := endpoints.DialTCP("tcp", "echo", relay, "example-client")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "hello through the relay")
	_ = c.(*endpoints.Conn).CloseWrite()
	b, _ := io.ReadAll(c)
	fmt.Println(string(b))
	<-served
	// Output:
	// listening as echo
	// connected: true
	// hello through the relay
}

// DialTCP reaches a server by name; the server learns the client's name.
func ExampleDialTCP() {
	relay, stop := startExampleRelay()
	defer stop()
	ln, err := endpoints.ListenRelay("tcp", "greeter", relay)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "hello, %s\n", c.(*endpoints.Conn).ClientName())
	}()

	c, err := endpoints.DialTCP("tcp", "greeter", relay, "alice",
		endpoints.WithDialTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	fmt.Print(string(b))
	<-served

	// A name nobody registered is the relay's 404.
	_, err = endpoints.DialTCP("tcp", "nobody", relay, "alice")
	fmt.Println(err)
	// Output:
	// hello, alice
	// endpoints: dial "nobody": relay refused: 404 unknown name
}

// A RelayDialer's DialContext fits http.Transport: http://NAME/ reaches
// the server registered as NAME. The server is a plain http.Server on the
// relay listener.
func ExampleNewRelayDialer() {
	relay, stop := startExampleRelay()
	defer stop()
	ln, err := endpoints.ListenRelay("tcp", "web", relay)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	d := endpoints.NewRelayDialer(relay, "http-client")
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	resp, err := client.Get("http://web/hello")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// RemoteAddr is the client's address as the relay saw it.
	fmt.Println(resp.Status, strings.Split(string(b), ":")[0])
	// Output: 200 OK GET /hello from 127.0.0.1
}

// ListenMTLS and DialMTLS run TLS end to end through the relay, each side
// presenting a certificate; the relay sees only ciphertext.
func ExampleListenMTLS() {
	mtlsExample()
	// Output:
	// hello, alice
	// server: secure
}

// DialMTLS is the client side of ExampleListenMTLS: the server's
// certificate must cover the name dialed ("secure"), and the client
// presents its own.
func ExampleDialMTLS() {
	mtlsExample()
	// Output:
	// hello, alice
	// server: secure
}

// mtlsExample is the body of the MTLS examples.
func mtlsExample() {
	serverCfg, clientCfg := examplePKI("secure", "alice")
	relay, stop := startExampleRelay()
	defer stop()

	ln, err := endpoints.ListenMTLS("tcp", "secure", serverCfg, relay)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peer := c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName
		fmt.Fprintf(c, "hello, %s\n", peer)
	}()

	c, err := endpoints.DialMTLS("tcp", "secure", clientCfg, relay, "alice")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	fmt.Print(string(b))
	fmt.Println("server:", c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName)
	<-served
}

// examplePKI makes a CA, a server config for serverName and a client
// config for clientName, both trusting the CA.
func examplePKI(serverName, clientName string) (server, client *tls.Config) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			log.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			log.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	server = &tls.Config{Certificates: []tls.Certificate{issue(2, serverName, x509.ExtKeyUsageServerAuth)}, ClientCAs: pool}
	client = &tls.Config{Certificates: []tls.Certificate{issue(3, clientName, x509.ExtKeyUsageClientAuth)}, RootCAs: pool}
	return server, client
}

// A server registers "echo" at two relays of three at once
// (WithRedundancy); a client given the same list dials it. When the first
// relay goes, the client's dial moves on to the next address, and the
// server's lost registration moves to the third relay.
func ExampleWithRedundancy() {
	a, stopA := startExampleRelay()
	b, stopB := startExampleRelay()
	defer stopB()
	c, stopC := startExampleRelay()
	defer stopC()
	list := "http://" + a + ",http://" + b + ",http://" + c

	ln, err := endpoints.ListenRelay("tcp", "echo", list,
		endpoints.WithRedundancy(2), endpoints.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(conn, conn)
			conn.Close()
		}
	}()
	st := ln.(*endpoints.Listener).State()
	fmt.Println("registrations:", st.Registrations, "of", st.Redundancy)

	stopA()
	d := endpoints.NewRelayDialer(list, "client")
	conn, err := d.Dial("tcp", "echo")
	if err != nil {
		log.Fatal(err)
	}
	io.WriteString(conn, "hello")
	conn.(*endpoints.Conn).CloseWrite()
	got, _ := io.ReadAll(conn)
	conn.Close()
	fmt.Println(string(got))
	// Output:
	// registrations: 2 of 2
	// hello
}
