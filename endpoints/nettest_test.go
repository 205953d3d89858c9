package endpoints_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestNettest is I4: x/net/nettest's conformance suite on a relayed pair,
// the dialed conn as c1 and the accepted conn as c2.
func TestNettest(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
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
