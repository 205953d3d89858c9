package wire

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Upgrade framing: the requests the endpoints send and the 101 the relay
// answers a switch with. The relay reads requests with net/http; the
// parsers here are the endpoints' (for the 101) and the tests' (for both).

// MaxUpgradeHead bounds the head of an upgrade request or 101 response
// that the parsers take, through its blank line.
const MaxUpgradeHead = 16 << 10

// MaxUpgradeLine bounds one line of such a head, without its line end.
const MaxUpgradeLine = DefaultMaxLine

// Errors of the upgrade parsers. Callers match them with errors.Is.
var (
	// ErrShortHead is returned while the input ends before the head's
	// blank line, and no limit is broken yet: read more and parse again.
	ErrShortHead = errors.New("wire: head incomplete")
	// ErrHeadTooLarge is returned for a head over MaxUpgradeHead bytes or
	// a line over MaxUpgradeLine bytes.
	ErrHeadTooLarge = errors.New("wire: head too large")
	// ErrNotSwitching is returned by ParseUpgradeResponse for a complete
	// head whose status line is not "HTTP/1.1 101": an ordinary response
	// (a refusal), to be read as HTTP.
	ErrNotSwitching = errors.New("wire: not a 101 response")
	// ErrBadUpgrade is returned for a head that breaks the upgrade
	// framing: a malformed line, or a missing or wrong Upgrade header.
	ErrBadUpgrade = errors.New("wire: malformed upgrade")
)

// UpgradeRequest is what ParseUpgradeRequest keeps of a request.
type UpgradeRequest struct {
	// Path is the request target, for example PathDial + name.
	Path string
	// Host is the Host header.
	Host string
	// ClientName is HeaderClientName, on dials.
	ClientName string
	// Registration is HeaderRegistration, on accepts and parks.
	Registration string
	// Authorization is the Authorization header, on dials.
	Authorization string
}

// UpgradeResponse is what ParseUpgradeResponse keeps of a 101.
type UpgradeResponse struct {
	// Node is HeaderNode, the relay's node id.
	Node string
	// ClientName is HeaderClientName, on accept and park 101s.
	ClientName string
	// ClientAddr is HeaderClientAddr, on accept and park 101s.
	ClientAddr string
}

// AppendRequest appends a protocol request head to dst: "POST path
// HTTP/1.1", Host, "Content-Length: 0", then header's name and value
// pairs in order (a pair with an empty value is left out), then the blank
// line. Lines end in CRLF. Names and values must not contain CR or LF.
func AppendRequest(dst []byte, host, path string, header ...string) []byte {
	return appendRequest(dst, host, path, false, header)
}

// AppendUpgradeRequest is AppendRequest for a request that switches
// protocols (dial, accept, park): "Connection: Upgrade" and "Upgrade:
// clusterlink-relay/1" come right after Content-Length, before header.
func AppendUpgradeRequest(dst []byte, host, path string, header ...string) []byte {
	return appendRequest(dst, host, path, true, header)
}

func appendRequest(dst []byte, host, path string, upgrade bool, header []string) []byte {
	dst = append(dst, "POST "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nContent-Length: 0\r\n"...)
	if upgrade {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "+UpgradeProtocol+"\r\n"...)
	}
	return appendFields(dst, header)
}

// AppendUpgradeResponse appends the relay's 101 head to dst: the status
// line, "Connection: Upgrade", "Upgrade: clusterlink-relay/1", HeaderNode
// with node (left out when empty), then header's name and value pairs in order (a pair with an
// empty value is left out), then the blank line. Lines end in CRLF.
func AppendUpgradeResponse(dst []byte, node string, header ...string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeProtocol+"\r\n"...)
	if node != "" {
		dst = append(dst, HeaderNode+": "...)
		dst = append(dst, node...)
		dst = append(dst, "\r\n"...)
	}
	return appendFields(dst, header)
}

// appendFields appends header lines for the pairs in header and the blank
// line that ends a head.
func appendFields(dst []byte, header []string) []byte {
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			continue
		}
		dst = append(dst, header[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, header[i+1]...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// head is a complete head found in a buffer: its lines, without line
// ends, and its length through the blank line.
type head struct {
	b     []byte
	first []byte // the start line
	rest  int    // offset of the first header line
	n     int    // length of the head
}

// findHead finds the head at the start of b. Lines end in LF or CRLF. It
// returns ErrShortHead while b may still grow into a head within the
// limits, ErrHeadTooLarge once it cannot.
func findHead(b []byte) (head, error) {
	h := head{b: b}
	for off := 0; ; {
		if off > MaxUpgradeHead {
			return head{}, fmt.Errorf("%w: over %d bytes", ErrHeadTooLarge, MaxUpgradeHead)
		}
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			switch {
			case len(b)-off > MaxUpgradeLine+1:
				return head{}, fmt.Errorf("%w: line over %d bytes", ErrHeadTooLarge, MaxUpgradeLine)
			case len(b) >= MaxUpgradeHead:
				return head{}, fmt.Errorf("%w: over %d bytes", ErrHeadTooLarge, MaxUpgradeHead)
			}
			return head{}, ErrShortHead
		}
		line := bytes.TrimSuffix(b[off:off+i], []byte("\r"))
		if len(line) > MaxUpgradeLine {
			return head{}, fmt.Errorf("%w: line over %d bytes", ErrHeadTooLarge, MaxUpgradeLine)
		}
		next := off + i + 1
		if off == 0 {
			h.first, h.rest = line, next
		} else if len(line) == 0 {
			if next > MaxUpgradeHead {
				return head{}, fmt.Errorf("%w: over %d bytes", ErrHeadTooLarge, MaxUpgradeHead)
			}
			h.n = next
			return h, nil
		}
		off = next
	}
}

// fields calls f with each header line's name and value (surrounding
// spaces and tabs trimmed), or returns ErrBadUpgrade for a line that is
// not "name: value" with a token name.
func (h head) fields(f func(k, v []byte)) error {
	for off := h.rest; off < h.n; {
		i := bytes.IndexByte(h.b[off:h.n], '\n')
		line := bytes.TrimSuffix(h.b[off:off+i], []byte("\r"))
		off += i + 1
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(k) {
			return fmt.Errorf("%w: header line %q", ErrBadUpgrade, clip(line))
		}
		f(k, bytes.Trim(v, " \t"))
	}
	return nil
}

// ParseUpgradeResponse parses the relay's answer to an upgrade request at
// the start of b. For a 101 ("HTTP/1.1 101", then a space or the line's
// end) with "Upgrade: clusterlink-relay/1" it returns the headers it keeps
// and the head's length n: b[n:] is the start of the raw stream. Other
// results: ErrShortHead (read more), ErrHeadTooLarge, ErrNotSwitching (a
// complete head of another status: read it as an HTTP response), or
// ErrBadUpgrade. Header names match in any case; values are trimmed.
func ParseUpgradeResponse(b []byte) (UpgradeResponse, int, error) {
	var r UpgradeResponse
	h, err := findHead(b)
	if err != nil {
		return r, 0, err
	}
	const status = "HTTP/1.1 101"
	if !bytes.HasPrefix(h.first, []byte(status)) || (len(h.first) > len(status) && h.first[len(status)] != ' ') {
		return r, 0, fmt.Errorf("%w: %q", ErrNotSwitching, clip(h.first))
	}
	var upgrade bool
	err = h.fields(func(k, v []byte) {
		switch {
		case bytes.EqualFold(k, []byte("Upgrade")):
			upgrade = bytes.EqualFold(v, []byte(UpgradeProtocol))
		case bytes.EqualFold(k, []byte(HeaderNode)):
			r.Node = string(v)
		case bytes.EqualFold(k, []byte(HeaderClientName)):
			r.ClientName = string(v)
		case bytes.EqualFold(k, []byte(HeaderClientAddr)):
			r.ClientAddr = string(v)
		}
	})
	if err != nil {
		return UpgradeResponse{}, 0, err
	}
	if !upgrade {
		return UpgradeResponse{}, 0, fmt.Errorf("%w: 101 without Upgrade: %s", ErrBadUpgrade, UpgradeProtocol)
	}
	return r, h.n, nil
}

// ParseUpgradeRequest parses an upgrade request head at the start of b:
// "POST /path HTTP/1.1", a Connection header with the token "upgrade" and
// "Upgrade: clusterlink-relay/1", as the relay requires. It returns the
// fields it keeps and the head's length n. Errors: ErrShortHead,
// ErrHeadTooLarge, ErrBadUpgrade.
func ParseUpgradeRequest(b []byte) (UpgradeRequest, int, error) {
	var r UpgradeRequest
	h, err := findHead(b)
	if err != nil {
		return r, 0, err
	}
	rest, ok := bytes.CutPrefix(h.first, []byte("POST "))
	path, ok2 := bytes.CutSuffix(rest, []byte(" HTTP/1.1"))
	if !ok || !ok2 || len(path) == 0 || path[0] != '/' || bytes.ContainsAny(path, " \t") {
		return r, 0, fmt.Errorf("%w: request line %q", ErrBadUpgrade, clip(h.first))
	}
	r.Path = string(path)
	var conn, upgrade bool
	err = h.fields(func(k, v []byte) {
		switch {
		case bytes.EqualFold(k, []byte("Connection")):
			if hasToken(string(v), "upgrade") {
				conn = true
			}
		case bytes.EqualFold(k, []byte("Upgrade")):
			upgrade = bytes.EqualFold(v, []byte(UpgradeProtocol))
		case bytes.EqualFold(k, []byte("Host")):
			r.Host = string(v)
		case bytes.EqualFold(k, []byte(HeaderClientName)):
			r.ClientName = string(v)
		case bytes.EqualFold(k, []byte(HeaderRegistration)):
			r.Registration = string(v)
		case bytes.EqualFold(k, []byte("Authorization")):
			r.Authorization = string(v)
		}
	})
	if err != nil {
		return UpgradeRequest{}, 0, err
	}
	if !conn || !upgrade {
		return UpgradeRequest{}, 0, fmt.Errorf("%w: request without Connection: Upgrade and Upgrade: %s", ErrBadUpgrade, UpgradeProtocol)
	}
	return r, h.n, nil
}

// isToken reports whether s is an RFC 9110 token: a method or a field
// name.
func isToken[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return len(s) > 0
}

// clip shortens a line quoted in an error.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
