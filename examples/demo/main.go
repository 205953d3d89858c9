// Command demo runs a whole clusterlink relay round trip in one process:
// a relay on a random loopback port, an echo server registered on it, a
// client that dials the server by name a few times, and an HTTP server and
// client talking through the relay. It prints each step with its timing,
// shuts everything down in order, and exits 0; any failure exits 1.
//
// Run it from the module root; it needs nothing else:
//
//	go run ./examples/demo
//	go run ./examples/demo -n 20
//
// Flags:
//
//	-n  the number of echo dials (default 5)
//
// The programs in examples/echo and examples/httpserve do the same across
// processes, against a relay started with go run ./relaynode/cmd/relaynode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/examples/internal/echo"
	"github.com/clusterlink-relay/relay/relaynode"
)

const (
	echoName   = "demo-echo"
	webName    = "demo-web"
	clientName = "demo-client"
	message    = "hello through the relay"
	// stepTimeout bounds every dial, echo and request.
	stepTimeout = 10 * time.Second
	// shutdownGrace bounds the relay's graceful shutdown.
	shutdownGrace = 5 * time.Second
	// watchdog ends the demo whatever happens, so that it always exits.
	watchdog = 30 * time.Second
)

// main parses the flags and runs the demo under a watchdog.
func main() {
	n := flag.Int("n", 5, "number of echo dials")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "demo: -n must be at least 1")
		os.Exit(2)
	}
	time.AfterFunc(watchdog, func() {
		fmt.Fprintf(os.Stderr, "demo: FAILED: still running after %v\n", watchdog)
		os.Exit(1)
	})
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("demo: OK")
}

// demo holds what run starts, so that shutdown stops it in order whichever
// step failed.
type demo struct {
	mu sync.Mutex // serializes output

	node      *relaynode.Node
	relayAddr string
	served    chan error // node.Serve's result

	echoLn   net.Listener
	echoDone chan struct{} // closed when the echo accept loop and its conns are done

	web       *http.Server
	webServed chan error // web.Serve's result
	transport *http.Transport

	clientConns []net.Conn
}

// printf prints one line, whole, whichever goroutine calls it.
func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Printf(format+"\n", args...)
}

// us rounds d to the microsecond, for printing.
func us(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

// run starts a relay, an echo server and an HTTP server on it, makes n
// echo dials and two HTTP gets, and shuts everything down.
func run(n int) (err error) {
	d := &demo{}
	defer func() {
		if serr := d.shutdown(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := d.startRelay(); err != nil {
		return err
	}
	if err := d.startEcho(); err != nil {
		return err
	}
	if err := d.dialEcho(n); err != nil {
		return err
	}
	return d.roundTripHTTP()
}

// startRelay starts a relay node on a random loopback port.
func (d *demo) startRelay() error {
	start := time.Now()
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		return fmt.Errorf("new relay: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		node.Close()
		return fmt.Errorf("relay listen: %w", err)
	}
	d.node, d.relayAddr = node, ln.Addr().String()
	d.served = make(chan error, 1)
	go func() { d.served <- node.Serve(ln) }()
	d.printf("relay: node %s serving on %s (%v)", node.Stats().NodeID, d.relayAddr, us(time.Since(start)))
	return nil
}

// startEcho registers the echo server and runs its accept loop.
func (d *demo) startEcho() error {
	start := time.Now()
	ln, err := endpoints.ListenRelay("tcp", echoName, "http://"+d.relayAddr)
	if err != nil {
		return fmt.Errorf("echo server: %w", err)
	}
	d.echoLn = ln
	d.echoDone = make(chan struct{})
	d.printf("echo server: registered %s (%v)", ln.Addr(), us(time.Since(start)))
	go func() {
		defer close(d.echoDone)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					d.printf("echo server: accept: %v", err)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.echo(c)
			}()
		}
	}()
	return nil
}

// echo copies c back to itself until the client half-closes, then
// half-closes in turn.
func (d *demo) echo(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(stepTimeout))
	client := ""
	if rc, ok := c.(*endpoints.Conn); ok {
		client = rc.ClientName()
	}
	n, err := io.Copy(c, c)
	if err != nil {
		d.printf("echo server: conn from %s (client %q): %v", c.RemoteAddr(), client, err)
		return
	}
	// Print before the half-close, which is what lets the client finish:
	// the lines then come out in order.
	d.printf("echo server: echoed %d bytes to %s (client %q)", n, c.RemoteAddr(), client)
	_ = c.(interface{ CloseWrite() error }).CloseWrite()
}

// dialEcho dials the echo server n times, one message each, and keeps the
// conns for the shutdown to close.
func (d *demo) dialEcho(n int) error {
	dialer := endpoints.NewRelayDialer(d.relayAddr, clientName)
	var total time.Duration
	for i := 1; i <= n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		start := time.Now()
		c, err := dialer.DialContext(ctx, "tcp", echoName)
		cancel()
		if err != nil {
			var re *endpoints.RelayError
			if errors.As(err, &re) {
				return fmt.Errorf("dial %d: relay refused with status %d: %w", i, re.Status, err)
			}
			return fmt.Errorf("dial %d: %w", i, err)
		}
		dialed := time.Since(start)
		d.clientConns = append(d.clientConns, c)
		got, err := echoOnce(c, message)
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		rtt := time.Since(start)
		total += rtt
		d.printf("dial %d: %v, echoed %d bytes %q, round trip %v", i, us(dialed), len(got), got, us(rtt))
	}
	d.printf("client: %d dials echoed, mean round trip %v", n, us(total/time.Duration(n)))
	return nil
}

// echoOnce sends msg on c, half-closes, reads the echo to EOF within
// stepTimeout, and checks that it is msg.
func echoOnce(c net.Conn, msg string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	got, err := echo.Exchange(ctx, c, msg)
	if err != nil {
		return nil, err
	}
	return got, echo.Check(msg, got)
}

// roundTripHTTP serves HTTP on a relay listener and GETs it through the
// relay with an http.Client whose transport dials by name.
func (d *demo) roundTripHTTP() error {
	start := time.Now()
	ln, err := endpoints.ListenRelay("tcp", webName, "http://"+d.relayAddr)
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s, %s", webName, r.RemoteAddr)
	})
	d.web = &http.Server{Handler: mux, ReadHeaderTimeout: stepTimeout}
	d.webServed = make(chan error, 1)
	go func() { d.webServed <- d.web.Serve(ln) }()
	d.printf("http server: serving on %s (%v)", ln.Addr(), us(time.Since(start)))

	d.transport = &http.Transport{DialContext: endpoints.NewRelayDialer(d.relayAddr, clientName).DialContext}
	hc := &http.Client{Transport: d.transport, Timeout: stepTimeout}
	url := "http://" + webName + "/"
	for i := 1; i <= 2; i++ {
		start := time.Now()
		resp, err := hc.Get(url)
		if err != nil {
			return fmt.Errorf("http get %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("http get %d: read body: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("http get %d: status %s", i, resp.Status)
		}
		reuse := "new relayed conn"
		if i > 1 {
			reuse = "same conn, kept alive"
		}
		d.printf("http get %d: GET %s: %s %q (%v, %s)", i, url, resp.Status, body, us(time.Since(start)), reuse)
	}
	return nil
}

// shutdown stops what run started, in order: client conns, servers and
// their listeners, then the relay, gracefully.
func (d *demo) shutdown() error {
	var errs []error
	start := time.Now()
	for _, c := range d.clientConns {
		c.Close()
	}
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
	d.printf("shutdown: closed %d echo client conns and the http client's idle conns (%v)", len(d.clientConns), us(time.Since(start)))

	if d.web != nil {
		start = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := d.web.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http server shutdown: %w", err))
		}
		cancel()
		if err := <-d.webServed; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("http server: %w", err))
		}
		d.printf("shutdown: http server and its relay listener closed (%v)", us(time.Since(start)))
	}
	if d.echoLn != nil {
		start = time.Now()
		d.echoLn.Close()
		<-d.echoDone
		d.printf("shutdown: echo listener closed (%v)", us(time.Since(start)))
	}
	if d.node != nil {
		start = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := d.node.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("relay shutdown: %w", err))
		}
		cancel()
		if err := <-d.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("relay serve: %w", err))
		}
		st := d.node.Stats()
		d.printf("shutdown: relay drained and stopped (%v)", us(time.Since(start)))
		d.printf("relay stats: %d pairs spliced, %d bytes to servers, %d bytes to clients, %d pairings failed",
			st.Spliced, st.BytesToServer, st.BytesToClient, st.PairingsFailed)
	}
	return errors.Join(errs...)
}
