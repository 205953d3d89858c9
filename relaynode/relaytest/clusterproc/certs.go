package clusterproc

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// WriteTLSFiles writes cert (its chain and private key) and ca as PEM
// files in a new temporary directory of the test, for a node's file flags
// (-tls-cert, -tls-key; -cluster-tls-cert, -cluster-tls-key,
// -cluster-tls-ca), and returns their paths.
func WriteTLSFiles(t testing.TB, cert tls.Certificate, ca *x509.Certificate) (certFile, keyFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("clusterproc: marshal key: %v", err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	caFile = filepath.Join(dir, "ca.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{
		{certFile, chain},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})},
		{caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatalf("clusterproc: %v", err)
		}
	}
	return certFile, keyFile, caFile
}
