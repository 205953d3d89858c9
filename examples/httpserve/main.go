// Command httpserve serves HTTP over a clusterlink relay: the relay
// listener is a net.Listener, so net/http serves on it unchanged, and the
// relay dialer's DialContext plugs into http.Transport.
//
// Run it with a relay, in three terminals from the module root:
//
//	go run ./relaynode/cmd/relaynode
//	go run ./examples/httpserve               # the server, registered as "web"
//	go run ./examples/httpserve -get          # a client: GET http://web/
//
// Flags:
//
//	-relay   the relay (default http://127.0.0.1:8080; host:port also works)
//	-name    the server's name on the relay, and the host of the client's
//	         URL (default web)
//	-get     act as the client: GET http://NAME/ through the relay, print
//	         the body, exit 0 on 200 OK
//	-client  the client's name on the relay, with -get (default web-client)
//
// The server stops on SIGINT or SIGTERM: it closes its listener, lets
// requests in flight finish for up to 5s, and exits 0.
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
)

// main parses the flags and serves, or with -get fetches.
func main() {
	relay := flag.String("relay", "http://127.0.0.1:8080", "`URL` of the relay: http://host:port or host:port")
	name := flag.String("name", "web", "`name` of the server on the relay")
	get := flag.Bool("get", false, "act as the client: GET http://NAME/ through the relay")
	client := flag.String("client", "web-client", "`name` the client gives the relay, with -get")
	flag.Parse()
	var err error
	if *get {
		err = fetch(*relay, *client, *name)
	} else {
		err = serve(*relay, *name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpserve:", err)
		os.Exit(1)
	}
}

// clientNameKey is the context key under which ConnContext stores the
// relayed client's name.
type clientNameKey struct{}

// serve registers name on relay and serves HTTP on it until SIGINT or
// SIGTERM.
func serve(relay, name string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ln, err := endpoints.ListenRelay("tcp", name, relay, echo.LogState(log)) // a line per re-registration
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		client, _ := r.Context().Value(clientNameKey{}).(string)
		log.Info("request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("remote", r.RemoteAddr), slog.String("client", client))
		fmt.Fprintf(w, "hello from %s through the relay, %s (client %q)\n", name, r.RemoteAddr, client)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Each relayed conn is an *endpoints.Conn: hand its client name
		// to the handlers.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*endpoints.Conn); ok {
				return context.WithValue(ctx, clientNameKey{}, rc.ClientName())
			}
			return ctx
		},
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	log.Info("serving", slog.String("addr", ln.Addr().String()))
	go func() { served <- srv.Serve(ln) }() // what http.Serve(ln, mux) does, plus Shutdown

	select {
	case err := <-served:
		// Only a dead registration ends Serve: failed callbacks never
		// reach Accept.
		return fmt.Errorf("serve: %w", err)
	case s := <-sigs:
		log.Info("stopping", slog.String("signal", s.String()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx) // closes ln, waits for requests in flight
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// fetch GETs http://name/ through relay as client and prints the
// response; a status other than 200 is an error.
func fetch(relay, client, name string) error {
	tr := &http.Transport{
		DialContext: endpoints.NewRelayDialer(relay, client).DialContext,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	// The URL's host is the server's name on the relay; the dialer drops
	// the port that http.Transport adds.
	resp, err := hc.Get("http://" + name + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	fmt.Printf("%s %s\n%s", resp.Proto, resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
