package clusterproc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EtcdReadyBound bounds the wait for a started etcd to answer healthy.
const EtcdReadyBound = 30 * time.Second

// EtcdBinary returns the path of the etcd server: $ETCD_BIN, else
// /usr/bin/etcd (Debian's etcd-server), else etcd on PATH. When none is
// installed it fails the test under CI (CI set; .ci/run installs
// etcd-server) and skips it elsewhere.
func EtcdBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("ETCD_BIN"), "/usr/bin/etcd"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("clusterproc: etcd not installed; .ci/run installs Debian's etcd-server")
	}
	t.Skip("clusterproc: etcd not installed (apt-get install etcd-server)")
	return ""
}

// Etcd is a one-member etcd server on 127.0.0.1, with its data in a
// temporary directory of the test.
type Etcd struct {
	t       testing.TB
	bin     string
	dir     string
	client  string // client URL
	peer    string // peer URL
	tls     EtcdTLS
	stopped time.Time

	mu sync.Mutex
	p  *proc // nil while stopped
}

// EtcdTLS puts etcd's client port on TLS: PEM files of its certificate,
// key and the CA its clients' certificates must chain to (with CA set,
// etcd asks every client for a certificate).
type EtcdTLS struct {
	CertFile, KeyFile, CAFile string
}

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
	e := &Etcd{t: t, bin: EtcdBinary(t), dir: t.TempDir(), tls: cfg}
	scheme := "http"
	if cfg.CertFile != "" {
		scheme = "https"
	}
	t.Cleanup(func() {
		e.mu.Lock()
		p := e.p
		e.p = nil
		e.mu.Unlock()
		if p == nil {
			return
		}
		if err := p.kill(); err != nil {
			t.Errorf("clusterproc: %v", err)
		}
	})
	// Ports picked free may be taken by someone else before etcd binds
	// them: pick new ones, a few times.
	var err error
	for range 3 {
		var cp, pp int
		if cp, err = freePort(); err != nil {
			break
		}
		if pp, err = freePort(); err != nil {
			break
		}
		e.client = fmt.Sprintf("%s://127.0.0.1:%d", scheme, cp)
		e.peer = fmt.Sprintf("http://127.0.0.1:%d", pp)
		if err = e.start(); err == nil {
			return e
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("clusterproc: %v", err)
	return nil
}

// Endpoint returns etcd's client URL, for -cluster-etcd.
func (e *Etcd) Endpoint() string { return e.client }

// DataDir returns etcd's data directory.
func (e *Etcd) DataDir() string { return e.dir }

// Stop kills etcd (SIGKILL: a crash, not a clean leave) and waits for it
// to end. Its ports and data dir stay for Start.
func (e *Etcd) Stop() {
	e.t.Helper()
	e.mu.Lock()
	p := e.p
	e.p = nil
	e.mu.Unlock()
	if p == nil {
		e.t.Fatal("clusterproc: etcd Stop: not running")
	}
	if err := p.kill(); err != nil {
		e.t.Fatalf("clusterproc: etcd Stop: %v", err)
	}
	e.stopped = time.Now()
}

// Start starts etcd again after Stop, on the same ports and data dir, and
// waits until it answers healthy.
func (e *Etcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	running := e.p != nil
	e.mu.Unlock()
	if running {
		e.t.Fatal("clusterproc: etcd Start: already running")
	}
	if err := e.start(); err != nil {
		e.t.Fatalf("clusterproc: etcd Start (stopped %v ago): %v", time.Since(e.stopped).Round(time.Millisecond), err)
	}
}

// Running reports whether etcd's process is up.
func (e *Etcd) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.p != nil && !e.p.exited()
}

// start runs the process and waits until it is healthy; on a failure the
// process is killed.
func (e *Etcd) start() error {
	cmd := exec.Command(e.bin,
		"--name", "clusterproc", "--data-dir", e.dir,
		"--listen-client-urls", e.client, "--advertise-client-urls", e.client,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "clusterproc="+e.peer,
		"--log-level", "error", "--logger", "zap")
	if e.tls.CertFile != "" {
		cmd.Args = append(cmd.Args, "--cert-file", e.tls.CertFile, "--key-file", e.tls.KeyFile)
		if e.tls.CAFile != "" {
			cmd.Args = append(cmd.Args, "--trusted-ca-file", e.tls.CAFile, "--client-cert-auth")
		}
	}
	cmd.Env = append(cleanEnv(), "ETCD_UNSUPPORTED_ARCH=")
	p, err := startProc("etcd", cmd, nil)
	if err != nil {
		return err
	}
	hc, err := e.healthClient()
	if err != nil {
		_ = p.kill()
		return err
	}
	if err := waitHealthy(p, hc, e.client, EtcdReadyBound); err != nil {
		_ = p.kill()
		return err
	}
	e.mu.Lock()
	e.p = p
	e.mu.Unlock()
	return nil
}

// healthClient returns the client that reads etcd's health: plain, or
// with the TLS files of e.tls (the CA to verify etcd, the certificate to
// present).
func (e *Etcd) healthClient() (*http.Client, error) {
	if e.tls.CertFile == "" {
		return httpClient, nil
	}
	cert, err := tls.LoadX509KeyPair(e.tls.CertFile, e.tls.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if e.tls.CAFile != "" {
		pem, err := os.ReadFile(e.tls.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS: no certificate in %s", e.tls.CAFile)
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}, nil
}

// waitHealthy polls etcd's /health until it answers 200 with
// "health":"true", within bound.
func waitHealthy(p *proc, hc *http.Client, client string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	var last string
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("etcd at %s did not start: %s", client, p.describe())
		}
		status, body, err := getWith(hc, client+"/health", time.Second)
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusOK && strings.Contains(string(body), `"health":"true"`):
			return nil
		default:
			last = fmt.Sprintf("%d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd at %s not healthy within %v (last: %s): %s", client, bound, last, p.describe())
}

// httpClient is the client of the harness's own requests: no keep-alive,
// so no idle connection outlives a test (goleak).
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches url within bound and returns its status and body, read up
// to 4 MiB.
func get(url string, bound time.Duration) (int, []byte, error) {
	return getWith(httpClient, url, bound)
}

// getWith is get through hc.
func getWith(hc *http.Client, url string, bound time.Duration) (int, []byte, error) {
	c := *hc
	c.Timeout = bound
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, body, fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}

// terminate is the signal that drains a relaynode.
var terminate = syscall.SIGTERM
