package clusterproc

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// EtcdReadyBound bounds the wait for a started etcd to answer healthy.
const EtcdReadyBound = procs.EtcdReadyBound

// EtcdBinary returns the path of the etcd server (procs.EtcdBinary):
// $ETCD_BIN, else /usr/bin/etcd (Debian's etcd-server), else etcd on PATH.
// When none is installed it fails the test under CI (CI set; .ci/run
// installs etcd-server) and skips it elsewhere.
func EtcdBinary(t testing.TB) string {
	t.Helper()
	bin, err := procs.EtcdBinary("")
	switch {
	case err == nil:
		return bin
	case !errors.Is(err, procs.ErrNoEtcd):
		t.Fatalf("clusterproc: %v", err)
	case os.Getenv("CI") != "":
		t.Fatal("clusterproc: etcd not installed; .ci/run installs Debian's etcd-server")
	}
	t.Skip("clusterproc: etcd not installed (apt-get install etcd-server)")
	return ""
}

// Etcd is a one-member etcd server on 127.0.0.1 (a procs.Etcd), with its
// data in a temporary directory of the test. Endpoint, DataDir, PID and
// Running are the procs.Etcd's.
type Etcd struct {
	*procs.Etcd
	t testing.TB
}

// EtcdTLS puts etcd's client port on TLS: PEM files of its certificate,
// key and the CA its clients' certificates must chain to (with CA set,
// etcd asks every client for a certificate).
type EtcdTLS = procs.EtcdTLS

// StartEtcd starts etcd on free loopback ports and waits, within
// EtcdReadyBound, until it answers healthy. It is killed in the test's
// cleanup.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return StartEtcdTLS(t, EtcdTLS{})
}

// StartEtcdTLS is StartEtcd with the client port on TLS (https), unless
// cfg is zero. Its health is read with the same certificate, which must
// be good for client authentication too.
func StartEtcdTLS(t testing.TB, cfg EtcdTLS) *Etcd {
	t.Helper()
	e, err := procs.StartEtcd(context.Background(), procs.EtcdConfig{Bin: EtcdBinary(t), DataDir: t.TempDir(), TLS: cfg})
	if err != nil {
		t.Fatalf("clusterproc: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("clusterproc: %v", err)
		}
	})
	return &Etcd{Etcd: e, t: t}
}

// Stop kills etcd (SIGKILL: a crash, not a clean leave) and waits for it
// to end, or fails the test. Its ports and data dir stay for Start.
func (e *Etcd) Stop() {
	e.t.Helper()
	if err := e.Etcd.Stop(); err != nil {
		e.t.Fatalf("clusterproc: %v", err)
	}
}

// Start starts etcd again after Stop, on the same ports and data dir, and
// waits until it answers healthy, or fails the test.
func (e *Etcd) Start() {
	e.t.Helper()
	if err := e.Etcd.Start(context.Background()); err != nil {
		e.t.Fatalf("clusterproc: %v", err)
	}
}
