// Package v0wire is a client and server of the original clusterlink
// relay's wire (v0), written for the project's tests from the wire's
// description in docs/PROTOCOL.md ("v0 compatibility"): a registration
// stream on /serverconn whose every event is exactly
// "event: connection\nData: {json}\n\n", dials and callbacks as CONNECT
// requests with a JSON body, and "HTTP/1.1 200 OK" before raw bytes. Like
// a v0 listener, Server.Next fails on any other line of the stream.
package v0wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Request is the JSON body of v0 requests and the data of v0 events.
type Request struct {
	Data     string `json:"Data"`
	ClientID string `json:"ClientID,omitempty"`
	ServerID string `json:"ServerID"`
}

// StatusError is a refusal: the status line's code and the body's text.
type StatusError struct {
	Code int
	Body string
}

// Error returns "v0: status CODE: BODY".
func (e *StatusError) Error() string {
	return fmt.Sprintf("v0: status %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// Status returns err's status code, or 0 when err is not a StatusError.
func Status(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// RawRequest returns the bytes of a v0 request: method path, Host, a JSON
// Content-Type, Content-Length, extra header lines, and body.
func RawRequest(method, path string, body []byte, headers ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, len(body))
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// Body returns the JSON of a v0 request body.
func Body(clientID, serverID string) []byte {
	b, _ := json.Marshal(Request{ClientID: clientID, ServerID: serverID})
	return b
}

// Conn is a connection after the relay's "HTTP/1.1 200 OK": raw bytes,
// read through the buffer that read the status.
type Conn struct {
	net.Conn
	br *bufio.Reader
	// Header is the 200's header.
	Header textproto.MIMEHeader
}

// Read reads the raw stream.
func (c *Conn) Read(p []byte) (int, error) { return c.br.Read(p) }

// CloseWrite half-closes the connection: the peer reads EOF.
func (c *Conn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("v0: %T has no CloseWrite", c.Conn)
	}
	return cw.CloseWrite()
}

// exchange sends raw on a new connection to addr and reads the status and
// header, within bound. On 200 the connection is returned; otherwise it is
// closed and the error is a *StatusError.
func exchange(addr string, raw []byte, bound time.Duration) (*Conn, int, error) {
	c, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		return nil, 0, fmt.Errorf("v0: dial %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(bound))
	if _, err := c.Write(raw); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("v0: send: %w", err)
	}
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("v0: read status: %w", err)
	}
	var proto string
	var code int
	if _, err := fmt.Sscanf(line, "%s %d", &proto, &code); err != nil || proto != "HTTP/1.1" {
		c.Close()
		return nil, 0, fmt.Errorf("v0: bad status line %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		c.Close()
		return nil, code, fmt.Errorf("v0: read header: %w", err)
	}
	if code != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(br, 512))
		c.Close()
		return nil, code, &StatusError{Code: code, Body: string(body)}
	}
	_ = c.SetDeadline(time.Time{})
	return &Conn{Conn: c, br: br, Header: h}, code, nil
}

// Dial connects to serverID through the relay at addr as clientID: a
// CONNECT /clientconn with the JSON body, and raw bytes after the 200.
func Dial(addr, clientID, serverID string, bound time.Duration) (*Conn, error) {
	c, _, err := exchange(addr, RawRequest(http.MethodConnect, "/clientconn", Body(clientID, serverID)), bound)
	return c, err
}

// Callback answers a connection event: a CONNECT /servercallback with the
// pair, ServerID being the server's own name. headers are extra header
// lines.
func Callback(addr, clientID, serverID string, bound time.Duration, headers ...string) (*Conn, error) {
	c, _, err := exchange(addr, RawRequest(http.MethodConnect, "/servercallback", Body(clientID, serverID), headers...), bound)
	return c, err
}

// Server is a v0 registration: its event stream.
type Server struct {
	// ID is the registered name.
	ID string
	// Addr is the relay's address.
	Addr string

	conn net.Conn
	br   *bufio.Reader // the chunked stream, de-chunked
	// Header is the registration response's header.
	Header http.Header
	// Chunked is whether the stream came with chunked framing.
	Chunked bool
}

// Register registers serverID on the relay at addr: a POST /serverconn
// with the JSON body. It returns once the relay answered 200.
func Register(addr, serverID string, bound time.Duration) (*Server, error) {
	c, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		return nil, fmt.Errorf("v0: dial %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(bound))
	if _, err := c.Write(RawRequest(http.MethodPost, "/serverconn", Body("", serverID))); err != nil {
		c.Close()
		return nil, fmt.Errorf("v0: send: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("v0: read registration answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		c.Close()
		return nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		c.Close()
		return nil, fmt.Errorf("v0: registration Content-Type %q", ct)
	}
	_ = c.SetDeadline(time.Time{})
	return &Server{ID: serverID, Addr: addr, conn: c, br: bufio.NewReader(resp.Body), Header: resp.Header,
		Chunked: len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"}, nil
}

// NextRaw reads the next event's three lines, within bound, as they came.
// Any line other than "event: connection", "Data: {...}" and the blank
// line is an error, as it is to a v0 listener.
func (s *Server) NextRaw(bound time.Duration) ([]byte, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(bound))
	defer s.conn.SetReadDeadline(time.Time{})
	var raw []byte
	for i, want := range []string{"event: connection\n", "Data: ", "\n"} {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return raw, fmt.Errorf("v0: read event: %w", err)
		}
		raw = append(raw, line...)
		if (i == 1 && !strings.HasPrefix(line, want)) || (i != 1 && line != want) {
			return raw, fmt.Errorf("v0: unexpected line %q", line)
		}
	}
	return raw, nil
}

// Next reads the next connection event, within bound.
func (s *Server) Next(bound time.Duration) (Request, error) {
	raw, err := s.NextRaw(bound)
	if err != nil {
		return Request{}, err
	}
	data := strings.SplitN(string(raw), "\n", 3)[1]
	var req Request
	if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "Data: ")), &req); err != nil {
		return Request{}, fmt.Errorf("v0: event data: %w", err)
	}
	return req, nil
}

// Serve answers every event with a callback and hands the callback's
// connection to handle, each in its own goroutine, until the stream ends;
// it returns the stream's error once every handler has returned.
// Callbacks that fail are sent to errs when it is not nil (without
// blocking).
func (s *Server) Serve(handle func(net.Conn), errs chan<- error) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		req, err := s.Next(24 * time.Hour)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Callback(s.Addr, req.ClientID, s.ID, 10*time.Second)
			if err != nil {
				if errs != nil {
					select {
					case errs <- err:
					default:
					}
				}
				return
			}
			handle(c)
		}()
	}
}

// Close ends the registration.
func (s *Server) Close() error { return s.conn.Close() }
