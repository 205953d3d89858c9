package benchmarks

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// dialFunc opens one connection to the echo service under test.
type dialFunc func(ctx context.Context) (net.Conn, error)

// serveEcho serves ln with relaytest.Serve until the benchmark's cleanup:
// each connection is echoed back or, with sink, read to EOF and answered
// with the byte count, 8 bytes little-endian.
func serveEcho(b testing.TB, ln net.Listener, sink bool) {
	relaytest.Serve(b, ln, func(c net.Conn) {
		if sink {
			n, _ := io.Copy(io.Discard, c)
			c.Write(binary.LittleEndian.AppendUint64(nil, uint64(n)))
			return
		}
		io.Copy(c, c)
	})
}

// direct starts a loopback TCP service and returns its dialer.
func direct(b testing.TB, sink bool) dialFunc {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveEcho(b, ln, sink)
	var d net.Dialer
	addr := ln.Addr().String()
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// relayed starts a relay with cfg and a service registered on it, and
// returns a dialer through the relay, made with dialOpts.
func relayed(b testing.TB, cfg relaynode.Config, sink bool, dialOpts ...endpoints.Option) (dialFunc, *relaytest.Relay) {
	if cfg.EventQueue == 0 {
		cfg.EventQueue = 1024
	}
	r := relaytest.Start(b, cfg)
	ln, err := endpoints.ListenRelay("tcp", "svc", r.URL, endpoints.WithCallbackWorkers(64), endpoints.WithAcceptBacklog(256))
	if err != nil {
		b.Fatal(err)
	}
	serveEcho(b, ln, sink)
	d := endpoints.NewRelayDialer(r.Addr, "bench", dialOpts...)
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", "svc") }, r
}

// relayedMTLS is relayed for an echo service with TLS end to end: the
// listener and the dialer hold certificates of one test CA, and each dial
// returns once its handshake with the server is done.
func relayedMTLS(b testing.TB, dialOpts ...endpoints.Option) dialFunc {
	var cfg relaynode.Config
	cfg.EventQueue = 1024
	r := relaytest.Start(b, cfg)
	ca := relaytest.NewCA(b, "bench CA")
	srv := &tls.Config{Certificates: []tls.Certificate{ca.Issue(b, "svc", "svc")}, ClientCAs: ca.Pool}
	ln, err := endpoints.ListenMTLS("tcp", "svc", srv, r.URL, endpoints.WithCallbackWorkers(64), endpoints.WithAcceptBacklog(256))
	if err != nil {
		b.Fatal(err)
	}
	serveEcho(b, ln, false)
	cli := &tls.Config{Certificates: []tls.Certificate{ca.Issue(b, "bench")}, RootCAs: ca.Pool}
	d := endpoints.NewRelayMTLSDialer(r.Addr, "bench", dialOpts...)
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", "svc", cli) }
}

// roundTrip dials, echoes one byte and closes.
func roundTrip(ctx context.Context, dial dialFunc) error {
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err
}

// percentile returns the p-th percentile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// reportLatency sorts lat and reports its p50 and p99 in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}
