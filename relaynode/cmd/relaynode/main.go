// Command relaynode runs a clusterlink relay.
//
// Usage:
//
//	relaynode [flags]
//
// It listens on -listen (default 127.0.0.1:8080; use :8080 to serve the
// public), logs one line per registration at info, and drains gracefully
// on SIGINT or SIGTERM: a second signal stops it at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/relaynode"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		// The library's errors already begin with its name.
		fmt.Fprintln(os.Stderr, "relaynode:", strings.TrimPrefix(err.Error(), "relaynode: "))
		os.Exit(1)
	}
}

// mailboxFlag is a flag.Value for one actor kind's mailbox.
type mailboxFlag struct{ m *actors.Mailbox }

func (f mailboxFlag) String() string {
	if f.m == nil {
		return ""
	}
	return f.m.String()
}

func (f mailboxFlag) Set(s string) error {
	m, err := actors.ParseMailbox(s)
	if err != nil {
		return err
	}
	*f.m = m
	return nil
}

// run parses args, serves until a signal, and drains. -version writes to
// stdout; logs, -h and errors go to stderr. ready, if not nil, receives the
// bound address once the relay listens.
func run(args []string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("relaynode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg relaynode.Config
	var groups flagGroups
	g := groups.add

	g("network", "listen", "log-level", "log-format", "grace", "version")
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to serve the relay on; use :8080 to serve the public")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text (logfmt, slog's text handler) or json (one JSON object a line)")
	grace := fs.Duration("grace", 10*time.Second, "how long a graceful shutdown (SIGTERM, SIGINT) lets live pairs finish")
	showVersion := fs.Bool("version", false, "print the build's version to stdout and exit")

	g("TLS and auth", "tls-cert", "tls-key", "auth-file", "trusted-proxies", "compat-v0")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate chain `file`: serve TLS to the relay (with -tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key `file` for -tls-cert")
	fs.StringVar(&cfg.AuthFile, "auth-file", "", "`file` of register/dial rules (name glob, SHA-256 of token); reloaded on SIGHUP. Empty: open mode")
	trusted := fs.String("trusted-proxies", "", "comma-separated `CIDRs` of proxies whose X-Forwarded-For is believed")
	fs.BoolVar(&cfg.CompatV0, "compat-v0", false, "also serve the original relay's v0 wire (/serverconn, /clientconn, /servercallback); unauthenticated beyond a source-IP check")

	g("limits", limitFlags(fs, &cfg)...)

	g("actors", "mailbox-directory", "mailbox-listener", "mailbox-pending", "mailbox-pair")
	cfg.Mailboxes = actors.DefaultMailboxes()
	fs.Var(mailboxFlag{&cfg.Mailboxes.Directory}, "mailbox-directory", "directory actor mailbox: unbounded, unbounded-lockfree, bounded (1024 slots) or bounded:SIZE")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Listener}, "mailbox-listener", "listener actor mailbox (same forms)")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Pending}, "mailbox-pending", "pending actor mailbox (same forms)")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Pair}, "mailbox-pair", "pair actor mailbox (same forms)")

	g("cluster", "cluster-etcd", "node-id", "cluster-listen", "advertise", "cluster-lease-ttl",
		"cluster-tls-cert", "cluster-tls-key", "cluster-tls-ca", "etcd-tls-cert", "etcd-tls-key", "etcd-tls-ca", "etcd-user")
	clusterEtcd := fs.String("cluster-etcd", "", "comma-separated etcd `endpoints` (host:port or URLs): join the cluster of relays sharing them. Empty: one node")
	fs.StringVar(&cfg.NodeID, "node-id", "", "`id` of this node in ready events and the Relay-Node header; unique in a cluster, where it is required. Empty: a random id")
	fs.StringVar(&cfg.ClusterListen, "cluster-listen", "", "`address` of the cluster port, where the other nodes send control messages (port 0: any free port); plaintext only on loopback")
	fs.StringVar(&cfg.Advertise, "advertise", "", "public `URL` of this node (e.g. https://relay-1.example:8443): servers call back here for dials made here")
	fs.DurationVar(&cfg.ClusterLeaseTTL, "cluster-lease-ttl", 0, "TTL of the node's etcd lease: how long a dead node's names stay in the directory")
	fs.StringVar(&cfg.ClusterTLSCertFile, "cluster-tls-cert", "", "PEM certificate `file` of this node for the cluster port (mutual TLS, with -cluster-tls-key and -cluster-tls-ca)")
	fs.StringVar(&cfg.ClusterTLSKeyFile, "cluster-tls-key", "", "PEM private key `file` for -cluster-tls-cert")
	fs.StringVar(&cfg.ClusterTLSCAFile, "cluster-tls-ca", "", "PEM CA `file`: the cluster port accepts, and dials, only peers with a certificate from it")
	fs.StringVar(&cfg.EtcdTLSCertFile, "etcd-tls-cert", "", "PEM client certificate `file` for etcd (with -etcd-tls-key)")
	fs.StringVar(&cfg.EtcdTLSKeyFile, "etcd-tls-key", "", "PEM private key `file` for -etcd-tls-cert")
	fs.StringVar(&cfg.EtcdTLSCAFile, "etcd-tls-ca", "", "PEM CA `file` that verifies etcd; any -etcd-tls-* flag turns TLS to etcd on")
	fs.StringVar(&cfg.EtcdUser, "etcd-user", "", "etcd `user`; the password is read from RELAYNODE_ETCD_PASSWORD only")

	g("admin", "admin-listen", "metrics-per-name", "pprof", "healthcheck")
	adminListen := fs.String("admin-listen", "", "`address` for /metrics, /healthz, /readyz and /status (off when empty; e.g. 127.0.0.1:9090)")
	fs.BoolVar(&cfg.MetricsPerName, "metrics-per-name", false, "export one SSE queue depth series per registered name")
	withPprof := pprofFlag(fs)
	healthURL := fs.String("healthcheck", "", "probe `URL` (e.g. http://127.0.0.1:9090/healthz) and exit 0 on a 200, 1 otherwise, without starting a relay: a container HEALTHCHECK with no curl")

	groups.effective = effectiveDefaults()
	groups.effective["cluster-lease-ttl"] = "5s"
	groups.effective["node-id"] = "random"
	fs.Usage = func() { groups.usage(fs) }
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *showVersion {
		fmt.Fprintln(stdout, versionString())
		return nil
	}
	if *healthURL != "" {
		return healthcheck(*healthURL, stdout)
	}
	if *withPprof && *adminListen == "" {
		return errPprofNoAdmin
	}
	if *trusted != "" {
		for _, c := range strings.Split(*trusted, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return fmt.Errorf("-trusted-proxies: %w", err)
			}
			cfg.TrustedProxies = append(cfg.TrustedProxies, p)
		}
	}
	if *clusterEtcd != "" {
		cfg.ClusterEtcd = strings.Split(*clusterEtcd, ",")
		// Never a flag: a flag's value is in every process listing.
		cfg.EtcdPassword = os.Getenv(envPrefix + "ETCD_PASSWORD")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log, err := newLogger(stderr, *logFormat, level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Version = buildVersion()

	// Signals are caught from here on, before the listen line is logged, so
	// that a SIGTERM sent as soon as the relay listens drains it rather
	// than kills it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	node, err := relaynode.New(cfg)
	if err != nil {
		return err
	}
	ln, err := relaynode.Listen("tcp", *listen)
	if err != nil {
		node.Close()
		return err
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	log.Info("relay listening", slog.String("addr", ln.Addr().String()), slog.String("scheme", scheme), slog.String("node", node.Stats().NodeID))
	if cfg.TLSCertFile == "" && !isLoopback(ln.Addr()) {
		log.Warn("serving plain HTTP on a non-loopback address: names and tokens cross the network in clear; use -tls-cert and -tls-key")
	}
	if addr := node.ClusterAddr(); addr != "" {
		log.Info("cluster listening", slog.String("addr", addr), slog.String("node", node.Stats().NodeID),
			slog.String("advertise", cfg.Advertise), slog.String("etcd", *clusterEtcd))
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}

	var admin net.Listener
	if *adminListen != "" {
		admin, err = net.Listen("tcp", *adminListen)
		if err != nil {
			ln.Close()
			node.Close()
			return fmt.Errorf("-admin-listen: %w", err)
		}
		log.Info("admin listening", slog.String("addr", admin.Addr().String()))
		defer serveAdmin(node, admin, *withPprof)()
	}

	if node.OpenMode() {
		log.Warn("open mode: no -auth-file, so anyone may register any free name; use -auth-file on a public relay")
	}
	hupDone := make(chan struct{})
	defer close(hupDone)
	go func() {
		for {
			select {
			case <-hup:
				if err := node.ReloadAuth(); err != nil {
					log.Warn("reload auth file", slog.Any("err", err))
				} else {
					log.Info("auth file reloaded", slog.String("file", cfg.AuthFile))
				}
			case <-hupDone:
				return
			}
		}
	}()

	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()

	select {
	case err := <-served:
		node.Close()
		return err
	case s := <-sigs:
		log.Info("draining", slog.String("signal", s.String()), slog.Duration("grace", *grace))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: stopping now")
			cancel()
		case <-ctx.Done():
		}
	}()
	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctx) }()
	if !awaitShutdown(ctx, shut, shutdownBound, log) {
		// The process exits with the node still closing: the kernel ends
		// what is left (sockets, pairs) when it does.
		log.Warn("stopped before the node finished closing", slog.Duration("bound", shutdownBound))
		return nil
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// shutdownBound is how long, once the grace has ended (or a second signal
// came), the binary waits for Node.Shutdown to finish closing before it
// exits anyway. A SIGTERM therefore ends the process within -grace plus
// this bound (docs/OPERATIONS.md).
const shutdownBound = time.Second

// awaitShutdown waits for shut, the result of Node.Shutdown(ctx), and logs
// an error it carries. Once ctx has ended it waits at most bound more, and
// reports false if Shutdown has not returned by then.
func awaitShutdown(ctx context.Context, shut <-chan error, bound time.Duration, log *slog.Logger) bool {
	var err error
	select {
	case err = <-shut:
	case <-ctx.Done():
		t := time.NewTimer(bound)
		defer t.Stop()
		select {
		case err = <-shut:
		case <-t.C:
			return false
		}
	}
	if err != nil {
		log.Warn("shutdown cut live pairs", slog.Any("err", err))
	}
	return true
}

// newLogger returns the binary's logger: slog's text or JSON handler on w.
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is neither text nor json", format)
}

// isLoopback reports whether a is a loopback address.
func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}
