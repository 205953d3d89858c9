package endpoints

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/clusterlink-relay/relay/wire"
)

// earlyDial writes the dial request for name on conn, bounded by ctx, and
// returns the relayed conn at once: the relay's answer is read by the
// conn's first Read (WithEarlyData).
func earlyDial(ctx context.Context, conn net.Conn, r relay, name, clientName string, header []string) (*Conn, error) {
	req := wire.AppendUpgradeRequest(make([]byte, 0, 256), r.host, wire.PathDial+name, header...)
	err := exchange(ctx, conn, req, func() error { return nil })
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := newConn(conn, nil, nil, name, clientName)
	br := upgradeReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	c.answer = br
	c.hasHead.Store(true)
	return c, nil
}

// awaitAnswer reads the relay's answer to an early dial, once, with c.mu
// held. A 101 leaves the bytes behind it in c.head; a refusal is kept in
// c.refused and returned to this Read, every Read after it and every
// write from then on. A read that meets the conn's deadline returns the
// timeout and leaves the answer to the next Read, which goes on from the
// bytes already buffered.
func (c *Conn) awaitAnswer() error {
	if err := c.refused.Load(); err != nil {
		return *err
	}
	if c.answer == nil {
		return nil
	}
	u, err := readUpgrade(context.Background(), c.answer, "dial", c.name)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.answer.Reset(nil)
	upgradeReaders.Put(c.answer)
	c.answer = nil
	if err != nil {
		err = fmt.Errorf("endpoints: dial %q: %w", c.name, err)
		c.refused.Store(&err)
		return err
	}
	c.head = u.head
	return nil
}
