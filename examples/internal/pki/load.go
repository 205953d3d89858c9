package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// Files is what an MTLS endpoint loads from the directory gencerts wrote.
type Files struct {
	// Cert is the endpoint's own certificate and key.
	Cert tls.Certificate
	// CAs holds the demo CA (ca.pem), which signed the peer's certificate.
	CAs *x509.CertPool
	// RelayCAs holds the CAs that sign an https:// relay's certificate.
	RelayCAs *x509.CertPool
}

// Load reads, from dir, leaf.pem and leaf-key.pem (such as "server" or
// "client") and ca.pem, and then the PEM file relayCA, or ca.pem in dir
// if relayCA is "". Its errors are those of tls.LoadX509KeyPair and
// os.ReadFile, unwrapped, and "FILE: no PEM certificate" for a file with
// no certificate in it.
func Load(dir, leaf, relayCA string) (*Files, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, leaf+".pem"), filepath.Join(dir, leaf+"-key.pem"))
	if err != nil {
		return nil, err
	}
	cas, err := loadPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	if relayCA == "" {
		relayCA = filepath.Join(dir, "ca.pem")
	}
	relayCAs, err := loadPool(relayCA)
	if err != nil {
		return nil, err
	}
	return &Files{Cert: cert, CAs: cas, RelayCAs: relayCAs}, nil
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
