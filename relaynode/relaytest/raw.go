package relaytest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// The raw client: the relay protocol spoken by hand, one request at a time,
// for the tests that play a peer the endpoints library would never be (a
// malformed request, a server that never calls back, a stream nobody
// reads) or that must see the exact bytes on the wire.

// UpgradeHeaders are the two request header lines, joined by CRLF, that ask
// for the switch to the relay's raw protocol.
const UpgradeHeaders = "Connection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol

// Request returns a raw HTTP/1.1 request with no body: the request line, a
// Host, Content-Length: 0, then each of headers as a line.
func Request(method, path string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// ListenRequest returns the request that registers name.
func ListenRequest(name string) string { return Request("POST", wire.PathListen+name) }

// DialRequest returns the request that dials name, introducing the client
// as client; an empty client sends no client name.
func DialRequest(name, client string) string {
	if client == "" {
		return Request("POST", wire.PathDial+name, UpgradeHeaders)
	}
	return Request("POST", wire.PathDial+name, UpgradeHeaders, wire.HeaderClientName+": "+client)
}

// AcceptRequest returns the callback request for path (a connect event's
// Callback, or wire.PathAccept and a token) made by the registration regID.
func AcceptRequest(path, regID string) string {
	return Request("POST", path, UpgradeHeaders, wire.HeaderRegistration+": "+regID)
}

// Answer is the relay's answer to one raw request.
type Answer struct {
	// Status is the response's status code; 0 when there was no answer.
	Status int
	// Reason is the text of a refusal (status 300 and up), trimmed, at most
	// wire.MaxReasonLen bytes.
	Reason string
	// Header is the response's header.
	Header http.Header
	// Body is the body of a 200 (an event stream), left unread.
	Body io.Reader
	// Took is the time from the start of the read to the answer, for
	// reports only.
	Took time.Duration
	// Err says why there is no answer.
	Err error
}

// String returns the status and reason, or why there was no answer.
func (a Answer) String() string {
	if a.Status == 0 {
		return fmt.Sprintf("no answer (%v)", a.Err)
	}
	return fmt.Sprintf("%d %q", a.Status, a.Reason)
}

// ReadAnswer reads one response from br. A refusal's text is read; the body
// of a 200 is left in Body, and the bytes behind a 101 are left in br.
func ReadAnswer(br *bufio.Reader) Answer {
	start := time.Now()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return Answer{Err: err, Took: time.Since(start)}
	}
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Took: time.Since(start)}
	switch {
	case resp.StatusCode >= 300:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxReasonLen))
		a.Reason = strings.TrimSpace(string(b))
	case resp.StatusCode == http.StatusOK:
		a.Body = resp.Body
	}
	return a
}

// Conn is a raw connection to a relay, with the buffered reader its
// answers and any bytes behind a 101 come on.
type Conn struct {
	net.Conn
	// R reads what the relay sends on Conn.
	R *bufio.Reader
}

// DialRaw opens a connection to addr with d (nil: a plain net.Dialer)
// within bound, and gives it a deadline bound away.
func DialRaw(d *net.Dialer, addr string, bound time.Duration) (*Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	dd := *d
	dd.Timeout = bound
	c, err := dd.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relaytest: dial %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(bound))
	return &Conn{Conn: c, R: bufio.NewReader(c)}, nil
}

// Send writes raw, a request and any bytes behind it, in one write.
func (c *Conn) Send(raw string) error {
	_, err := io.WriteString(c.Conn, raw)
	return err
}

// Answer reads one answer, waiting at most bound, and then lifts the read
// deadline.
func (c *Conn) Answer(bound time.Duration) Answer {
	_ = c.SetReadDeadline(time.Now().Add(bound))
	defer c.SetReadDeadline(time.Time{})
	return ReadAnswer(c.R)
}

// Do sends raw on a new connection to addr and reads one answer, all
// within bound. The connection is closed when it returns.
func Do(addr, raw string, bound time.Duration) Answer {
	c, err := DialRaw(nil, addr, bound)
	if err != nil {
		return Answer{Err: err}
	}
	defer c.Close()
	werr := c.Send(raw) // the answer may be there even so
	a := ReadAnswer(c.R)
	if a.Status == 0 && werr != nil {
		a.Err = werr
	}
	return a
}

// Upgrade sends raw (a dial or callback request, with any bytes behind it)
// on a new connection to addr and reads the answer, within bound. On a 101
// it returns the connection, its deadline lifted, with any bytes that came
// behind the 101 in its reader; on any other answer the connection is
// closed and nil.
func Upgrade(addr, raw string, bound time.Duration) (*Conn, Answer) {
	c, err := DialRaw(nil, addr, bound)
	if err != nil {
		return nil, Answer{Err: err}
	}
	if err := c.Send(raw); err != nil {
		c.Close()
		return nil, Answer{Err: err}
	}
	a := ReadAnswer(c.R)
	if a.Status != http.StatusSwitchingProtocols {
		c.Close()
		return nil, a
	}
	if up := a.Header.Get("Upgrade"); !strings.EqualFold(up, wire.UpgradeProtocol) {
		c.Close()
		return nil, Answer{Err: fmt.Errorf("relaytest: 101 with Upgrade %q", up)}
	}
	_ = c.SetDeadline(time.Time{})
	return c, a
}

// Stream is a registration made by hand: its connection, the reader of its
// events, and the registration id from its ready event.
type Stream struct {
	*Conn
	// Events reads the stream's events after the ready event.
	Events *wire.Reader
	// Registration is the id the ready event gave.
	Registration string
}

// Listen registers name on the relay at addr over a connection made by d
// (nil: a plain net.Dialer) and reads the ready event, within bound. On a
// refusal the stream is nil and the answer says why.
func Listen(d *net.Dialer, addr, name string, bound time.Duration) (*Stream, Answer) {
	c, err := DialRaw(d, addr, bound)
	if err != nil {
		return nil, Answer{Err: err}
	}
	if err := c.Send(ListenRequest(name)); err != nil {
		c.Close()
		return nil, Answer{Err: err}
	}
	a := ReadAnswer(c.R)
	if a.Status != http.StatusOK {
		c.Close()
		return nil, a
	}
	if ct := a.Header.Get("Content-Type"); ct != wire.ContentTypeEventStream {
		c.Close()
		return nil, Answer{Err: fmt.Errorf("relaytest: listen: Content-Type %q, want %q", ct, wire.ContentTypeEventStream)}
	}
	events := wire.NewReader(a.Body, 0, 0)
	ev, err := events.Next()
	if err != nil || ev.Type != wire.EventReady {
		c.Close()
		return nil, Answer{Err: fmt.Errorf("relaytest: listen: first event %q, %v; want %q", ev.Type, err, wire.EventReady)}
	}
	ready, err := wire.ParseReady(ev.Data)
	if err != nil {
		c.Close()
		return nil, Answer{Err: fmt.Errorf("relaytest: listen: %w", err)}
	}
	_ = c.SetDeadline(time.Time{})
	return &Stream{Conn: c, Events: events, Registration: ready.Registration}, a
}

// NextConnect reads the stream up to its next connect event, passing over
// at most 100 other events, within bound.
func (s *Stream) NextConnect(bound time.Duration) (wire.ConnectEvent, error) {
	_ = s.SetReadDeadline(time.Now().Add(bound))
	defer s.SetReadDeadline(time.Time{})
	for range 100 {
		ev, err := s.Events.Next()
		if err != nil {
			return wire.ConnectEvent{}, fmt.Errorf("relaytest: read connect event: %w", err)
		}
		if ev.Type == wire.EventConnect {
			return wire.ParseConnect(ev.Data)
		}
	}
	return wire.ConnectEvent{}, errors.New("relaytest: no connect event among 100 events")
}
