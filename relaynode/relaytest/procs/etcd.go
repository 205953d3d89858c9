package procs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// EtcdReadyBound bounds the wait for a started etcd to answer healthy.
const EtcdReadyBound = 30 * time.Second

// ErrNoEtcd is EtcdBinary's error when no etcd server is installed.
var ErrNoEtcd = errors.New("etcd not found: install Debian's etcd-server (apt-get install etcd-server)")

// EtcdBinary returns the path of the etcd server: first (a flag's value)
// if not empty, else $ETCD_BIN, else /usr/bin/etcd (Debian's
// etcd-server), else etcd on PATH; a path that does not exist is passed
// over. With none installed it returns ErrNoEtcd.
func EtcdBinary(first string) (string, error) {
	for _, p := range []string{first, os.Getenv("ETCD_BIN"), "/usr/bin/etcd"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	return "", ErrNoEtcd
}

// EtcdConfig is how StartEtcd runs etcd.
type EtcdConfig struct {
	// Bin is the etcd server. Empty: EtcdBinary("").
	Bin string
	// DataDir is etcd's data directory, the caller's to remove. Required.
	DataDir string
	// TLS, unless zero, puts the client port on TLS.
	TLS EtcdTLS
}

// EtcdTLS puts etcd's client port on TLS: PEM files of its certificate,
// key and the CA its clients' certificates must chain to (with CA set,
// etcd asks every client for a certificate).
type EtcdTLS struct {
	CertFile, KeyFile, CAFile string
}

// Etcd is a one-member etcd server on 127.0.0.1.
type Etcd struct {
	bin     string
	dir     string
	client  string // client URL
	peer    string // peer URL
	tls     EtcdTLS
	stopped time.Time

	mu sync.Mutex
	p  *Proc // nil while stopped
}

// StartEtcd starts etcd with cfg on free loopback ports and waits, within
// EtcdReadyBound and ctx, until it answers healthy. With cfg.TLS its
// health is read with the same certificate, which must be good for client
// authentication too. The caller ends it with Close; on an error nothing
// is left running.
func StartEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("start etcd: no data dir")
	}
	e := &Etcd{bin: cfg.Bin, dir: cfg.DataDir, tls: cfg.TLS}
	if e.bin == "" {
		var err error
		if e.bin, err = EtcdBinary(""); err != nil {
			return nil, err
		}
	}
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	// Ports picked free may be taken by someone else before etcd binds
	// them: pick new ones, a few times.
	var err error
	for range 3 {
		var cp, pp int
		if cp, err = FreePort(); err != nil {
			break
		}
		if pp, err = FreePort(); err != nil {
			break
		}
		e.client = fmt.Sprintf("%s://127.0.0.1:%d", scheme, cp)
		e.peer = fmt.Sprintf("http://127.0.0.1:%d", pp)
		if err = e.start(ctx); err == nil {
			return e, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

// Endpoint returns etcd's client URL, for -cluster-etcd.
func (e *Etcd) Endpoint() string { return e.client }

// DataDir returns etcd's data directory.
func (e *Etcd) DataDir() string { return e.dir }

// PID returns etcd's process id, or 0 while it is stopped.
func (e *Etcd) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p == nil {
		return 0
	}
	return e.p.PID()
}

// Stop kills etcd (SIGKILL: a crash, not a clean leave) and waits for it
// to end. Its ports and data dir stay for Start.
func (e *Etcd) Stop() error {
	p := e.take()
	if p == nil {
		return errors.New("etcd Stop: not running")
	}
	if err := p.Kill(); err != nil {
		return fmt.Errorf("etcd Stop: %w", err)
	}
	e.stopped = time.Now()
	return nil
}

// Start starts etcd again after Stop, on the same ports and data dir, and
// waits, within EtcdReadyBound and ctx, until it answers healthy.
func (e *Etcd) Start(ctx context.Context) error {
	e.mu.Lock()
	running := e.p != nil
	e.mu.Unlock()
	if running {
		return errors.New("etcd Start: already running")
	}
	if err := e.start(ctx); err != nil {
		return fmt.Errorf("etcd Start (stopped %v ago): %w", time.Since(e.stopped).Round(time.Millisecond), err)
	}
	return nil
}

// Running reports whether etcd's process is up.
func (e *Etcd) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.p != nil && !e.p.Exited()
}

// Close kills etcd, if it runs, and waits for it to end. It may be called
// more than once.
func (e *Etcd) Close() error {
	p := e.take()
	if p == nil {
		return nil
	}
	if err := p.Kill(); err != nil {
		return fmt.Errorf("etcd Close: %w", err)
	}
	return nil
}

// take returns etcd's process, nil if stopped, and marks it stopped.
func (e *Etcd) take() *Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.p
	e.p = nil
	return p
}

// start runs the process and waits until it is healthy; on a failure the
// process is killed.
func (e *Etcd) start(ctx context.Context) error {
	cmd := exec.Command(e.bin,
		"--name", "relaytest", "--data-dir", e.dir,
		"--listen-client-urls", e.client, "--advertise-client-urls", e.client,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "relaytest="+e.peer,
		"--log-level", "error", "--logger", "zap")
	if e.tls.CertFile != "" {
		cmd.Args = append(cmd.Args, "--cert-file", e.tls.CertFile, "--key-file", e.tls.KeyFile)
		if e.tls.CAFile != "" {
			cmd.Args = append(cmd.Args, "--trusted-ca-file", e.tls.CAFile, "--client-cert-auth")
		}
	}
	// etcd refuses to run on an architecture it does not support unless
	// this names it; on the ones it supports the variable is ignored.
	cmd.Env = append(CleanEnv(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	p, err := Start("etcd", cmd, nil)
	if err != nil {
		return err
	}
	hc, err := e.healthClient()
	if err == nil {
		err = waitHealthy(ctx, p, hc, e.client, EtcdReadyBound)
	}
	if err != nil {
		return errors.Join(err, p.Kill())
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
// "health":"true", within bound and ctx.
func waitHealthy(ctx context.Context, p *Proc, hc *http.Client, client string, bound time.Duration) error {
	var last string
	err := poll(ctx, bound, func() (bool, error) {
		if p.Exited() {
			return false, errExited
		}
		status, body, err := getWith(ctx, hc, client+"/health", time.Second)
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusOK && strings.Contains(string(body), `"health":"true"`):
			return true, nil
		default:
			last = fmt.Sprintf("%d %s", status, body)
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("etcd at %s did not start: %s", client, p.Describe())
	}
	return fmt.Errorf("etcd at %s not healthy (last: %s): %w: %s", client, last, err, p.Describe())
}
