package endpoints_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// fakeClientAddr is the client address the fake relay announces.
const fakeClientAddr = "192.0.2.1:4242"

// fakeRelay is a stand-in relay that answers every dial and callback with a
// 101 followed, in the same write, by a payload and a half-close; and every
// registration with a ready event and one connect event. It lets the tests
// place bytes right behind a 101 deterministically.
type fakeRelay struct {
	addr  string
	regID string
}

func startFakeRelay(t testing.TB, payload []byte) *fakeRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeRelay{addr: ln.Addr().String(), regID: wire.NewToken().String()}
	relaytest.Serve(t, ln, func(c net.Conn) {
		if err := fr.handle(c, payload); err != nil {
			t.Errorf("fake relay: %v", err)
		}
	})
	return fr
}

func (fr *fakeRelay) handle(c net.Conn, payload []byte) error {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	upgrade := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol + "\r\n"
	switch {
	case strings.HasPrefix(req.URL.Path, wire.PathListen):
		tok := wire.NewToken().String()
		b := []byte("HTTP/1.1 200 OK\r\nRelay-Node: fake\r\nContent-Type: " + wire.ContentTypeEventStream + "\r\n\r\n")
		b, _ = wire.AppendJSONEvent(b, wire.EventReady, wire.ReadyEvent{Node: "fake", Registration: fr.regID, HeartbeatMillis: 60000})
		b, _ = wire.AppendJSONEvent(b, wire.EventConnect, wire.ConnectEvent{
			Token: tok, Client: clientName, ClientAddr: fakeClientAddr, Callback: wire.PathAccept + tok,
			DeadlineUnixMilli: time.Now().Add(time.Minute).UnixMilli(),
		})
		if _, err := c.Write(b); err != nil {
			return err
		}
		// Hold the stream until the listener closes it.
		_ = c.SetDeadline(time.Time{})
		_, _ = br.WriteTo(io.Discard)
		return nil
	case strings.HasPrefix(req.URL.Path, wire.PathAccept):
		if got := req.Header.Get(wire.HeaderRegistration); got != fr.regID {
			_, err := c.Write([]byte("HTTP/1.1 403 Forbidden\r\nRelay-Node: fake\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			return err
		}
		upgrade += wire.HeaderClientName + ": " + clientName + "\r\n" + wire.HeaderClientAddr + ": " + fakeClientAddr + "\r\n"
	case strings.HasPrefix(req.URL.Path, wire.PathDial):
	default:
		_, err := c.Write([]byte("HTTP/1.1 404 Not Found\r\nRelay-Node: fake\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return err
	}
	if _, err := c.Write(append([]byte(upgrade+"\r\n"), payload...)); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, _ = br.WriteTo(io.Discard)
	return nil
}
