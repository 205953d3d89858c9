// Command server is an echo server that listens on a clusterlink relay
// instead of a local port: it registers a name, and every connection dialed
// to that name through the relay is echoed back byte for byte.
//
// Run it with a relay and a client, in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode
//	go run ./examples/echo/server
//	go run ./examples/echo/client
//
// Flags:
//
//	-relay  the relay's URL (default http://127.0.0.1:8080)
//	-name   the name to register (default echo)
//
// It logs each accepted connection to stderr. SIGINT or SIGTERM closes the
// listener and the connections in flight, and the server exits 0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/clusterlink-relay/relay/endpoints"
)

func main() {
	relay := flag.String("relay", "http://127.0.0.1:8080", "`URL` of the relay: http://host:port or host:port")
	name := flag.String("name", "echo", "`name` to register on the relay")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *relay, *name); err != nil {
		log.Error("echo server failed", slog.Any("err", err))
		os.Exit(1)
	}
}

func run(log *slog.Logger, relay, name string) error {
	ln, err := endpoints.ListenRelay("tcp", name, relay)
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
			// Failed callbacks and lost streams never reach Accept (the
			// listener re-registers by itself): an error here is a
			// permanent refusal, such as the name taken by someone else.
			return fmt.Errorf("accept: %w", err)
		}
		attrs := []any{slog.String("remote", c.RemoteAddr().String())}
		if rc, ok := c.(*endpoints.Conn); ok {
			attrs = append(attrs, slog.String("client", rc.ClientName()))
		}
		log.Info("accepted", attrs...)
		live.run(c, func() { echo(log, c) })
	}
}

// echo copies c back to itself until the client half-closes, then
// half-closes in turn so that the client reads EOF after the echo.
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
