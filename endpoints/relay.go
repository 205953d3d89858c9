package endpoints

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// relay is a parsed relay address.
type relay struct {
	host   string // host:port
	useTLS bool
}

// String returns the relay as a URL, http://host:port or https://host:port.
func (r relay) String() string {
	if r.useTLS {
		return "https://" + r.host
	}
	return "http://" + r.host
}

// parseRelays parses a relay address that may be a comma-separated list
// of addresses, each as parseRelay takes it, with spaces around entries
// allowed. An empty entry, a bad one or one listed twice (the same host:port
// and scheme) is ErrBadRelayAddress naming the entry and its position.
func parseRelays(s string) ([]relay, error) {
	if !strings.Contains(s, ",") {
		r, err := parseRelay(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		return []relay{r}, nil
	}
	entries := strings.Split(s, ",")
	rs := make([]relay, 0, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("%w %q: entry %d of %d is empty", ErrBadRelayAddress, s, i+1, len(entries))
		}
		r, err := parseRelay(e)
		if err != nil {
			return nil, fmt.Errorf("entry %d of %d: %w", i+1, len(entries), err)
		}
		for j, o := range rs {
			if o == r {
				return nil, fmt.Errorf("%w %q: entry %d of %d repeats entry %d (%s)", ErrBadRelayAddress, e, i+1, len(entries), j+1, r)
			}
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// relayErr names relay in err when there are several to tell apart.
func relayErr(rs []relay, i int, err error) error {
	if len(rs) == 1 {
		return err
	}
	return fmt.Errorf("relay %s: %w", rs[i], err)
}

// parseRelay accepts host:port, http://host:port and https://host:port. A
// URL without a port takes 80 or 443. Every other input, including a
// host:port with junk after the port ("h:80/"), an empty host or a port
// outside 1-65535, is ErrBadRelayAddress naming the input.
func parseRelay(s string) (relay, error) {
	bad := func(why string) (relay, error) {
		return relay{}, fmt.Errorf("%w %q: %s", ErrBadRelayAddress, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return bad("want host:port, http://host:port or https://host:port")
		}
		if why := checkHostPort(host, port); why != "" {
			return bad(why)
		}
		return relay{host: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Host == "" {
		return bad("want scheme://host:port only")
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
		return bad(fmt.Sprintf("scheme %q, want http or https", u.Scheme))
	}
	if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	if why := checkHostPort(u.Hostname(), port); why != "" {
		return bad(why)
	}
	r.host = net.JoinHostPort(u.Hostname(), port)
	return r, nil
}

// checkHostPort returns why host and port cannot name a relay, or "". The
// host is an IP address or a DNS name; the port a number from 1 to 65535.
func checkHostPort(host, port string) string {
	if host == "" {
		return "empty host"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("port %q, want 1-65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Sprintf("host %q: byte %q", host, c)
		}
	}
	return ""
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

// exchange writes one protocol request head, req, on conn, then calls
// read to read the answer. The context alone bounds both: when it ends,
// the conn's deadline moves to the past and the I/O returns, and read
// reports the context's error rather than the I/O error it caused
// (ctxErr). When read succeeds and ctx is still live, the conn is left
// with no deadline.
func exchange(ctx context.Context, conn net.Conn, req []byte, read func() error) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(req); err != nil {
		return ctxErr(ctx, err)
	}
	if err := read(); err != nil {
		return err
	}
	if !stop() {
		return ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	return nil
}

// refusal reads the reason of an answer that is not the one wanted and
// returns it as a *RelayError; an answer without the relay's Relay-Node
// header did not come from a relay, and is ErrNotRelay.
func refusal(resp *http.Response, op, name string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxReasonLen))
	resp.Body.Close()
	reason := strings.TrimSpace(string(b))
	if resp.Header.Get(wire.HeaderNode) == "" {
		if reason == "" {
			return fmt.Errorf("%w: answered %q", ErrNotRelay, resp.Status)
		}
		return fmt.Errorf("%w: answered %q: %q", ErrNotRelay, resp.Status, reason)
	}
	return &RelayError{Op: op, Name: name, Status: resp.StatusCode, Reason: reason}
}

// upgraded is what a 101 tells the endpoints.
type upgraded struct {
	clientName string // Relay-Client-Name, on callbacks and parks
	clientAddr string // Relay-Client-Addr, on callbacks and parks
	head       []byte // bytes that came behind the 101, to be read first
}

// upgradeReaders holds the readers of upgrade exchanges, each large
// enough for the largest head wire.ParseUpgradeResponse takes: once a 101
// is parsed and the bytes behind it copied out, its reader is free.
var upgradeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, wire.MaxUpgradeHead) }}

// upgradeExchange is exchange for a request that switches protocols: a
// dial, a callback or a park, with header's extra name and value pairs.
// Its answer is read by readUpgrade.
func upgradeExchange(ctx context.Context, conn net.Conn, r relay, op, name, path string, header ...string) (u upgraded, err error) {
	br := upgradeReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() {
		br.Reset(nil)
		upgradeReaders.Put(br)
	}()
	req := wire.AppendUpgradeRequest(make([]byte, 0, 256), r.host, path, header...)
	err = exchange(ctx, conn, req, func() error {
		u, err = readUpgrade(ctx, br, op, name)
		return err
	})
	return u, err
}

// readUpgrade reads the answer to an upgrade request from br, whose buffer
// holds wire.MaxUpgradeHead bytes: it reads until wire.ParseUpgradeResponse
// finds a whole head, within that bound. A 101 gives its headers and the
// bytes behind it; a head of any other status is read as HTTP (its body
// bounded by wire.MaxReasonLen) and becomes a *RelayError, or ErrNotRelay.
func readUpgrade(ctx context.Context, br *bufio.Reader, op, name string) (upgraded, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		resp, n, err := wire.ParseUpgradeResponse(b)
		switch {
		case errors.Is(err, wire.ErrHeadTooLarge):
			return upgraded{}, fmt.Errorf("%w: %w", ErrProtocol, err)
		case err == nil:
			_, _ = br.Discard(n)
			u := upgraded{clientName: resp.ClientName, clientAddr: resp.ClientAddr}
			if k := br.Buffered(); k > 0 {
				u.head = make([]byte, k)
				_, _ = io.ReadFull(br, u.head)
			}
			return u, nil
		case errors.Is(err, wire.ErrShortHead):
			// Wait for at least one more byte.
			if _, err := br.Peek(len(b) + 1); err != nil {
				return upgraded{}, ctxErr(ctx, fmt.Errorf("%w: reading 101: %w", ErrProtocol, err))
			}
		case errors.Is(err, wire.ErrNotSwitching):
			// The whole head is buffered: ReadResponse reads no further
			// than the body, which refusal bounds.
			hr, err := http.ReadResponse(br, nil)
			if err != nil {
				return upgraded{}, fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			return upgraded{}, refusal(hr, op, name)
		default:
			return upgraded{}, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
	}
}

// readHead waits until br, whose buffer holds wire.MaxUpgradeHead bytes,
// holds a whole response head, so that http.ReadResponse reads no further
// than the body: an endless or oversized head is ErrProtocol wrapping
// wire.ErrHeadTooLarge, not a growing buffer.
func readHead(ctx context.Context, br *bufio.Reader) error {
	for {
		b, _ := br.Peek(br.Buffered())
		_, _, err := wire.ParseUpgradeResponse(b)
		switch {
		case errors.Is(err, wire.ErrHeadTooLarge):
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		case !errors.Is(err, wire.ErrShortHead):
			return nil // a whole head, of whatever status
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return ctxErr(ctx, fmt.Errorf("%w: reading response: %v", ErrProtocol, err))
		}
	}
}

// ctxErr prefers the context's error over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
