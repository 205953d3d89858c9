package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// holderHeartbeat is the heartbeat the holder announces: long enough that no
// listener expects a heartbeat while it is held.
const holderHeartbeat = time.Hour

// holderRelay answers registrations as a relay does, up to and including
// the ready event, then holds each stream's socket with no goroutine and
// no buffer. Holding listeners against it costs the endpoint side of a
// registration and almost nothing else: the listeners mode's baseline.
type holderRelay struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and the answers in flight

	mu     sync.Mutex // guards the following
	held   []net.Conn
	closed bool
}

// startHolder starts a holder relay (a baseline, not a relay) on 127.0.0.1:0.
func startHolder() (*holderRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("holder relay listen: %w", err)
	}
	s := &holderRelay{ln: ln}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// addr returns the holder's host:port.
func (s *holderRelay) addr() string { return s.ln.Addr().String() }

// loop accepts until close, answering each connection on its own
// goroutine.
func (s *holderRelay) loop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.answer(c)
		}()
	}
}

// answer reads one listen request and answers 200 with a ready event,
// then keeps the socket, or closes it on anything else.
func (s *holderRelay) answer(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil || req.Method != http.MethodPost || !strings.HasPrefix(req.URL.Path, wire.PathListen) {
		c.Close()
		return
	}
	msg := []byte("HTTP/1.1 200 OK\r\nContent-Type: " + wire.ContentTypeEventStream + "\r\nCache-Control: no-store\r\n" +
		wire.HeaderNode + ": holder\r\n\r\n") // endpoints refuse an answer without it as not a relay
	msg, err = wire.AppendJSONEvent(msg, wire.EventReady, wire.ReadyEvent{
		Node: "holder", Registration: wire.NewToken().String(), HeartbeatMillis: holderHeartbeat.Milliseconds(),
	})
	if err == nil {
		_, err = c.Write(msg)
	}
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.held = append(s.held, c)
}

// close stops the holder, closes every held socket and waits for its
// goroutines. It is safe to call twice.
func (s *holderRelay) close() {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.held {
		c.Close()
	}
	s.held = nil
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}
