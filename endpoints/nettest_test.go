package endpoints_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestNettest is I4: x/net/nettest's conformance suite on a relayed pair,
// the dialed conn as c1 and the accepted conn as c2.
//
// The suite expects a conn to keep working after a write timeout, which a
// TLS conn never does: "After a Write has timed out, the TLS state is
// corrupt and all future writes will return the same error"
// (crypto/tls.Conn.SetWriteDeadline). With TLS to the relay, the relayed
// conn writes through a *tls.Conn too. So the suite runs on the plain
// transports only; TestTLSDeadlines checks what holds over TLS.
func TestNettest(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			if tr.usesTLS() {
				t.Skip("a TLS conn's write timeout is permanent (crypto/tls); see TestTLSDeadlines")
			}
			_, ln, d := newPair(t, tr)
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				c1, err = d.Dial("tcp", serverName)
				if err != nil {
					return nil, nil, nil, err
				}
				type accepted struct {
					c   net.Conn
					err error
				}
				ch := make(chan accepted, 1)
				go func() {
					c, err := ln.Accept()
					ch <- accepted{c, err}
				}()
				select {
				case a := <-ch:
					if a.err != nil {
						c1.Close()
						return nil, nil, nil, a.err
					}
					c2 = a.c
				case <-time.After(ioTimeout):
					c1.Close()
					ln.Close() // ends the Accept
					<-ch
					return nil, nil, nil, fmt.Errorf("accept: nothing within %v", ioTimeout)
				}
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

// TestTLSDeadlines checks the deadline behaviour of relayed conns over the
// TLS transports, where nettest does not apply: a read timeout is an
// os.ErrDeadlineExceeded net.Error and the conn then works on; a write
// timeout is also one, and, as crypto/tls documents, every later write
// fails, while the peer's bytes can still be read.
func TestTLSDeadlines(t *testing.T) {
	for _, tr := range transports {
		if !tr.usesTLS() {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			_, ln, d := newPair(t, tr)
			c, err := d.Dial("tcp", serverName)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			sc := acceptOne(t, ln)
			_ = sc.SetDeadline(time.Now().Add(ioTimeout))

			var b [1]byte
			_ = c.SetReadDeadline(time.Now().Add(-time.Second))
			if _, err := c.Read(b[:]); !isTimeout(err) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			if _, err := sc.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
				t.Fatalf("read after a read timeout: %q, %v; want \"x\"", b[:], err)
			}

			_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
			if _, err := c.Write([]byte("y")); !isTimeout(err) {
				t.Fatalf("write past the deadline: %v, want a timeout", err)
			}
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			if _, err := c.Write([]byte("z")); err == nil {
				t.Errorf("write after a write timeout succeeded; crypto/tls documents it fails for good")
			}
			if _, err := sc.Write([]byte("w")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'w' {
				t.Errorf("read after a write timeout: %q, %v; want \"w\"", b[:], err)
			}
		})
	}
}

// isTimeout reports whether err is a deadline error as the contracts say:
// os.ErrDeadlineExceeded and a net.Error whose Timeout() holds.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}
