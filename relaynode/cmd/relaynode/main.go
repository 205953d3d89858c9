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
	if err := run(os.Args[1:], os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "relaynode:", err)
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

// run parses args, serves until a signal, and drains. ready, if not nil,
// receives the bound address once the relay listens.
func run(args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("relaynode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg relaynode.Config
	var groups flagGroups
	g := groups.add

	g("network", "listen", "log-level", "grace", "version")
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to serve the relay on; use :8080 to serve the public")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	grace := fs.Duration("grace", 10*time.Second, "how long a graceful shutdown (SIGTERM, SIGINT) lets live pairs finish")
	version := fs.Bool("version", false, "print the build's version and exit")

	g("TLS and auth", "tls-cert", "tls-key", "auth-file", "trusted-proxies", "compat-v0")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate chain `file`: serve TLS to the relay (with -tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key `file` for -tls-cert")
	fs.StringVar(&cfg.AuthFile, "auth-file", "", "`file` of register/dial rules (name glob, SHA-256 of token); reloaded on SIGHUP. Empty: open mode")
	trusted := fs.String("trusted-proxies", "", "comma-separated `CIDRs` of proxies whose X-Forwarded-For is believed")
	fs.BoolVar(&cfg.CompatV0, "compat-v0", false, "also serve the original relay's v0 wire (/serverconn, /clientconn, /servercallback); unauthenticated beyond a source-IP check")

	g("limits", limitFlags(fs, &cfg)...)

	g("actors", "mailbox-directory", "mailbox-listener", "mailbox-pending", "mailbox-pair")
	cfg.Mailboxes = actors.DefaultMailboxes
	fs.Var(mailboxFlag{&cfg.Mailboxes.Directory}, "mailbox-directory", "directory actor mailbox: unbounded, unbounded-lockfree, bounded (1024 slots) or bounded:SIZE")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Listener}, "mailbox-listener", "listener actor mailbox (same forms)")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Pending}, "mailbox-pending", "pending actor mailbox (same forms)")
	fs.Var(mailboxFlag{&cfg.Mailboxes.Pair}, "mailbox-pair", "pair actor mailbox (same forms)")

	g("admin", "admin-listen", "metrics-per-name")
	adminListen := fs.String("admin-listen", "", "`address` for /metrics, /healthz, /readyz and /status (off when empty; e.g. 127.0.0.1:9090)")
	fs.BoolVar(&cfg.MetricsPerName, "metrics-per-name", false, "export one SSE queue depth series per registered name")

	groups.effective = effectiveDefaults()
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
	if *version {
		fmt.Fprintln(stderr, versionString())
		return nil
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log

	node, err := relaynode.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		node.Close()
		return err
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	log.Info("relay listening", slog.String("addr", ln.Addr().String()), slog.String("scheme", scheme), slog.String("node", node.Engine().NodeID()))
	if cfg.TLSCertFile == "" && !isLoopback(ln.Addr()) {
		log.Warn("serving plain HTTP on a non-loopback address: names and tokens cross the network in clear; use -tls-cert and -tls-key")
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
		go func() { _ = node.ServeAdmin(admin) }()
	}

	if node.OpenMode() {
		log.Warn("open mode: no -auth-file, so anyone may register any free name; use -auth-file on a public relay")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
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
	if err := node.Shutdown(ctx); err != nil {
		log.Warn("shutdown cut live pairs", slog.Any("err", err))
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// isLoopback reports whether a is a loopback address.
func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}
