package endpoints

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Conn is a connection relayed to its peer. It is the net.Conn that
// dialers return and listeners accept.
type Conn struct {
	net.Conn // the socket to the relay

	remote     net.Addr // the peer's address, when the relay told it
	name       string   // the server's registered name
	clientName string   // the client's name, as the client gave it

	// hasHead is set while Read has something to do before the socket:
	// bytes in head, or an early dial's answer to read (or its refusal).
	hasHead atomic.Bool
	mu      sync.Mutex            // guards head and answer
	head    []byte                // bytes that arrived behind the 101
	answer  *bufio.Reader         // an early dial's answer, still to read (WithEarlyData)
	refused atomic.Pointer[error] // the early dial's refusal, returned by every Read and write
}

func newConn(c net.Conn, head []byte, remote net.Addr, name, clientName string) *Conn {
	rc := &Conn{Conn: c, remote: remote, name: name, clientName: clientName}
	if len(head) > 0 {
		rc.head = head
		rc.hasHead.Store(true)
	}
	return rc
}

// Read reads bytes that arrived with the relay's answer first, then from
// the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if c.hasHead.Load() {
		c.mu.Lock()
		if err := c.awaitAnswer(); err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if len(c.head) > 0 {
			n := copy(p, c.head)
			c.head = c.head[n:]
			if len(c.head) == 0 {
				c.head = nil
				c.hasHead.Store(false)
			}
			c.mu.Unlock()
			return n, nil
		}
		c.hasHead.Store(false)
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

// takeHead returns and forgets the bytes that arrived behind the 101,
// after reading an early dial's answer; its error is the refusal.
func (c *Conn) takeHead() ([]byte, error) {
	if !c.hasHead.Load() {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.awaitAnswer(); err != nil {
		return nil, err
	}
	h := c.head
	c.head = nil
	c.hasHead.Store(false)
	return h, nil
}

// WriteTo writes the bytes that arrived behind the 101, then everything
// read from the socket, to w, until EOF. It is what io.Copy(w, c) calls:
// when w is a TCP socket (or a *Conn over one, through its ReadFrom) and
// the socket to the relay is TCP, the bytes move with splice(2) instead of
// through a buffer.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	h, err := c.takeHead()
	if err != nil {
		return 0, err
	}
	if len(h) > 0 {
		m, err := w.Write(h)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	m, err := io.Copy(w, c.Conn)
	return n + m, err
}

// Write writes p to the socket; once a Read has met an early dial's
// refusal, it returns that refusal instead.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.refused.Load(); err != nil {
		return 0, *err
	}
	return c.Conn.Write(p)
}

// ReadFrom copies r to the socket until EOF. It is what io.Copy(c, r)
// calls: when r is a TCP socket (or a *Conn over one, through its WriteTo,
// which writes its head first) and the socket to the relay is TCP, the
// bytes move with splice(2).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.refused.Load(); err != nil {
		return 0, *err
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite half-closes the connection: the peer reads EOF, and this side
// can still read.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: "relay", Err: ErrUnsupportedNetwork}
}

// RemoteAddr returns the peer's address: on an accepted conn, the dialing
// client's address as the relay saw it; otherwise the relay's address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// Name returns the server name the connection was dialed to.
func (c *Conn) Name() string { return c.name }

// ClientName returns the name the dialing client gave, or "".
func (c *Conn) ClientName() string { return c.clientName }

// NetConn returns the socket to the relay.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Addr is the address of a name on a relay.
type Addr struct {
	// Name is the server's registered name.
	Name string
	// Relay is the relay's host:port.
	Relay string
}

// Network returns "relay".
func (a Addr) Network() string { return "relay" }

// String returns name@relay.
func (a Addr) String() string { return a.Name + "@" + a.Relay }
