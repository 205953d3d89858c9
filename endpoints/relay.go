package endpoints

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// relay is a parsed relay address.
type relay struct {
	host   string // host:port
	useTLS bool
}

// parseRelay accepts host:port, http://host:port and https://host:port. A
// URL without a port takes 80 or 443.
func parseRelay(s string) (relay, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return relay{}, fmt.Errorf("%w %q: %v", ErrBadRelayAddress, s, err)
		}
		return relay{host: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return relay{}, fmt.Errorf("%w %q: %v", ErrBadRelayAddress, s, err)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Host == "" {
		return relay{}, fmt.Errorf("%w %q: want scheme://host:port only", ErrBadRelayAddress, s)
	}
	var r relay
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		r.useTLS = true
		if port == "" {
			port = "443"
		}
	default:
		return relay{}, fmt.Errorf("%w %q: scheme %q", ErrBadRelayAddress, s, u.Scheme)
	}
	r.host = net.JoinHostPort(u.Hostname(), port)
	return r, nil
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	}
	return fmt.Errorf("%w %q", ErrUnsupportedNetwork, network)
}

// connect dials the relay: TCP, and TLS for an https:// relay. TLS offers
// http/1.1 only, as the relay does: an HTTP/2 request cannot switch
// protocols.
func (r relay) connect(ctx context.Context, o *options, network string) (net.Conn, error) {
	raw, err := o.dialer.DialContext(ctx, network, r.host)
	if err != nil || !r.useTLS {
		return raw, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.relayTLS != nil {
		cfg = o.relayTLS.Clone()
	}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(r.host)
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls to relay: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		raw.Close()
		return nil, fmt.Errorf("%w: relay negotiated %q, want http/1.1", ErrProtocol, p)
	}
	return tc, nil
}

// exchange writes one protocol request on conn and reads the response head.
// It returns the reader holding any bytes that arrived behind the head. The
// exchange is bounded by ctx: its deadline becomes the conn's, and its
// cancellation interrupts the I/O. A non-wantStatus answer becomes a
// *RelayError.
func exchange(ctx context.Context, conn net.Conn, r relay, op, name, path string, header []string, wantStatus int) (*http.Response, *bufio.Reader, error) {
	// The context alone bounds the exchange: when it ends, the conn's
	// deadline moves to the past and the I/O returns, and ctxErr reports
	// the context's error rather than the I/O error it caused.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var b strings.Builder
	b.Grow(256)
	b.WriteString("POST ")
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(r.host)
	b.WriteString("\r\nContent-Length: 0\r\n")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			continue
		}
		b.WriteString(header[i])
		b.WriteString(": ")
		b.WriteString(header[i+1])
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	if resp.StatusCode != wantStatus {
		reason, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxReasonLen))
		resp.Body.Close()
		return nil, nil, &RelayError{Op: op, Name: name, Status: resp.StatusCode, Reason: strings.TrimSpace(string(reason))}
	}
	if stop() {
		_ = conn.SetDeadline(time.Time{})
	} else {
		return nil, nil, ctx.Err()
	}
	return resp, br, nil
}

// ctxErr prefers the context's error over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// upgradeHeaders are the headers of dial and accept requests.
func upgradeHeaders(extra ...string) []string {
	return append([]string{"Connection", "Upgrade", "Upgrade", wire.UpgradeProtocol}, extra...)
}

// checkUpgrade checks a 101 answer and returns the bytes that came behind
// it, to be read before the socket's.
func checkUpgrade(resp *http.Response, br *bufio.Reader) ([]byte, error) {
	if !strings.EqualFold(resp.Header.Get("Upgrade"), wire.UpgradeProtocol) {
		return nil, fmt.Errorf("%w: 101 without Upgrade: %s", ErrProtocol, wire.UpgradeProtocol)
	}
	n := br.Buffered()
	if n == 0 {
		return nil, nil
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, err
	}
	return head, nil
}
