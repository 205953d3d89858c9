// Command gencerts writes a throwaway PKI for the MTLS example: a demo CA
// and leaf certificates signed by it, made locally with crypto/x509 (ECDSA
// P-256 keys, PEM files). Nothing is downloaded, and nothing it writes
// belongs in version control.
//
// Run the example in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode        # 1: a relay on 127.0.0.1:8080
//	go run ./examples/mtls/gencerts         # 2: certificates into ./certs
//	go run ./examples/mtls/server           # 2: the MTLS echo server
//	go run ./examples/mtls/client           # 3: an MTLS client
//
// The relay splices the TLS records of a handshake it is not part of: it
// never sees the plaintext. To hide the names and tokens from the network
// too, serve the relay itself over TLS with the relay certificate made
// here, and point the endpoints at https://:
//
//	go run ./relaynode/cmd/relaynode -listen 127.0.0.1:8443 -tls-cert certs/relay.pem -tls-key certs/relay-key.pem
//	go run ./examples/mtls/server -relay https://127.0.0.1:8443
//	go run ./examples/mtls/client -relay https://127.0.0.1:8443
//
// Flags:
//
//	-dir          where to write the files (default ./certs)
//	-name         the server's name on the relay, which its certificate's
//	              DNS SAN covers (default secure-echo)
//	-client       the client certificate's common name (default mtls-client)
//	-relay-hosts  comma-separated DNS names and IPs of the relay certificate
//	              (default 127.0.0.1,localhost)
//	-valid        how long the certificates are valid (default 720h)
//
// It writes ca.pem and ca-key.pem (the demo CA), server.pem and
// server-key.pem, client.pem and client-key.pem, relay.pem and
// relay-key.pem. Keys are PKCS #8, mode 0600. Existing files are
// overwritten.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// main parses the flags and writes the certificates.
func main() {
	dir := flag.String("dir", "./certs", "`directory` to write the certificates and keys to")
	name := flag.String("name", "secure-echo", "the server's `name` on the relay: its certificate's DNS SAN")
	client := flag.String("client", "mtls-client", "the client certificate's common `name`")
	relayHosts := flag.String("relay-hosts", "127.0.0.1,localhost", "comma-separated `hosts` (DNS names or IPs) of the relay certificate")
	valid := flag.Duration("valid", 30*24*time.Hour, "validity of the certificates")
	flag.Parse()
	if err := run(*dir, *name, *client, strings.Split(*relayHosts, ","), *valid); err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
}

// run writes the demo CA and the server, client and relay certificates,
// each with its key, into dir.
func run(dir, name, client string, relayHosts []string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, caKey, err := newCA("clusterlink relay demo CA", valid)
	if err != nil {
		return err
	}
	if err := write(dir, "ca", ca, caKey); err != nil {
		return err
	}
	leaves := []struct {
		file, cn string
		sans     []string
		usage    x509.ExtKeyUsage
	}{
		{"server", name, []string{name}, x509.ExtKeyUsageServerAuth},
		{"client", client, nil, x509.ExtKeyUsageClientAuth},
		{"relay", "clusterlink relay", relayHosts, x509.ExtKeyUsageServerAuth},
	}
	for _, l := range leaves {
		cert, key, err := newLeaf(ca, caKey, l.cn, l.sans, l.usage, valid)
		if err != nil {
			return fmt.Errorf("%s certificate: %w", l.file, err)
		}
		if err := write(dir, l.file, cert, key); err != nil {
			return err
		}
	}
	fmt.Printf("wrote the demo CA and the server (%q), client (%q) and relay (%s) certificates to %s\n",
		name, client, strings.Join(relayHosts, ", "), dir)
	return nil
}

// newCA returns a self-signed CA certificate and its key.
func newCA(cn string, valid time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	tmpl, key, err := newTemplate(cn, valid)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	return sign(tmpl, tmpl, key, key)
}

// newLeaf returns a certificate for cn signed by ca, with each of sans as
// a DNS name or an IP address SAN.
func newLeaf(ca *x509.Certificate, caKey crypto.Signer, cn string, sans []string, usage x509.ExtKeyUsage, valid time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	tmpl, key, err := newTemplate(cn, valid)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		switch ip := net.ParseIP(s); {
		case s == "":
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	return sign(tmpl, ca, caKey, key)
}

// newTemplate returns a new P-256 key and the template of a certificate
// for cn, with a random serial, valid from an hour ago (for clock skew)
// for valid.
func newTemplate(cn string, valid time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"clusterlink relay demo"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(valid),
	}, key, nil
}

// sign issues tmpl for key's public key, signed by parent with parentKey,
// and returns the certificate and key.
func sign(tmpl, parent *x509.Certificate, parentKey crypto.Signer, key *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// write writes base.pem (the certificate) and base-key.pem (the key, PKCS
// #8, mode 0600) in dir.
func write(dir, base string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(filepath.Join(dir, base+".pem"), certPEM, 0o644); err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return os.WriteFile(filepath.Join(dir, base+"-key.pem"), keyPEM, 0o600)
}
