package wire

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
)

// RequestHead is one HTTP/1.1 request head as ParseRequestHead reads it.
type RequestHead struct {
	// Method and Target are the request line's method and origin-form
	// target (a path: no query, no escapes).
	Method string
	Target string
	// Host is the Host header's value.
	Host string
	// Header holds every header but Host, keys in canonical form, one
	// value each.
	Header http.Header
	// Close says the client asked for the connection to close after the
	// answer (Connection: close).
	Close bool

	values []string // the backing of Header's values, kept for Reset
}

// Reset empties h for another ParseRequestHead, keeping its header map
// and value slice: a caller that reuses heads allocates neither again.
// Nothing may hold h.Header, or its value slices, after Reset.
func (h *RequestHead) Reset() {
	clear(h.Header)
	clear(h.values)
	*h = RequestHead{Header: h.Header, values: h.values[:0]}
}

// EndOfHead returns the length of the request head at the start of b, up
// to and including the blank line that ends it, or -1 if b holds no
// complete head yet.
func EndOfHead(b []byte) int {
	if i := bytes.Index(b, headEnd); i >= 0 {
		return i + len(headEnd)
	}
	return -1
}

// headEnd ends a request head: the CRLF of its last line and the blank
// line's.
var headEnd = []byte("\r\n\r\n")

// ParseRequestHead parses head, one request head up to and including its
// blank line (see EndOfHead), in the one plain form the protocol's
// clients send: an origin-form path of unreserved characters, HTTP/1.1,
// CRLF line ends, one Host, no header twice, no body (Content-Length 0
// or none; no Transfer-Encoding, Expect, Trailer or TE), no folded lines
// and no control characters. It reports false for anything else, which
// the caller then leaves to a full HTTP server: ParseRequestHead accepts a
// subset of what net/http accepts, never more, and refuses nothing
// itself. The strings in the result share head's memory.
func ParseRequestHead(head string) (RequestHead, bool) {
	var h RequestHead
	ok := h.Parse(head)
	return h, ok
}

// Parse is ParseRequestHead into h, which must be new or Reset; on false,
// h is left partly filled, to be Reset.
func (h *RequestHead) Parse(head string) bool {
	line, rest, ok := strings.Cut(head, "\r\n")
	if !ok {
		return false
	}
	method, line, ok := strings.Cut(line, " ")
	if !ok || method == "" || !isToken(method) {
		return false
	}
	target, version, ok := strings.Cut(line, " ")
	if !ok || version != "HTTP/1.1" || !isPlainPath(target) {
		return false
	}
	h.Method, h.Target = method, target
	// One value slice for all the headers: a head of n lines has at most
	// n-1 headers after the request line (the last line is empty).
	n := strings.Count(rest, "\r\n") - 1
	if n < 0 {
		return false
	}
	if h.Header == nil {
		h.Header = make(http.Header, n)
	}
	if cap(h.values) < n {
		h.values = make([]string, n)
	}
	values := h.values[:n]
	hosts := 0
	for i := 0; ; i++ {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return false
		}
		if line == "" {
			if rest != "" || hosts != 1 {
				return false
			}
			return true
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !isToken(name) {
			return false
		}
		value = strings.Trim(value, " \t")
		if !isFieldValue(value) {
			return false
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Host":
			hosts++
			if !isHost(value) {
				return false
			}
			h.Host = value
			continue
		case "Content-Length":
			if value != "0" { // no body is the only length taken
				return false
			}
		case "Transfer-Encoding", "Expect", "Trailer", "Te":
			return false
		case "Connection":
			if hasToken(value, "close") {
				h.Close = true
			}
		}
		if _, dup := h.Header[key]; dup || i >= n {
			return false
		}
		values[i] = value
		h.Header[key] = values[i : i+1 : i+1]
	}
}

// hasToken reports whether the comma-separated list v has token t, in any
// case.
func hasToken(v, t string) bool {
	for v != "" {
		var item string
		item, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(item), t) {
			return true
		}
	}
	return false
}

// isPlainPath reports whether s is an absolute path of unreserved
// characters, sub-delimiters, ':', '@' and '/': one that needs no
// unescaping, has no query and means the same to every parser.
func isPlainPath(s string) bool {
	if s == "" || s[0] != '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldValue reports whether s is a header value of visible ASCII,
// spaces and tabs only.
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c > 0x7e {
			return false
		}
	}
	return true
}

// isHost reports whether s is a plain host[:port]: letters, digits, '.',
// '-', ':' and the brackets of an IPv6 literal.
func isHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return s != ""
}
