package echo

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink the listener's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogStateReRegistration restarts the relay under a listener and
// checks that the loss and the re-registration are each logged once.
func TestLogStateReRegistration(t *testing.T) {
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln0.Addr().String()
	first := relaytest.StartOn(t, relaynode.Config{}, ln0)

	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	ln, err := endpoints.ListenRelay("tcp", "stateful", "http://"+addr,
		LogState(log), endpoints.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	first.Close()
	var ln1 net.Listener
	relaytest.Eventually(t, 10*time.Second, func() bool {
		ln1, err = net.Listen("tcp", addr) // the same address, once it is free
		return err == nil
	}, "the relay's address free again")
	relaytest.StartOn(t, relaynode.Config{}, ln1)
	relaytest.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(out.String(), "msg=re-registered")
	}, "a re-registered line")
	logged := out.String()
	if n := strings.Count(logged, "msg=re-registered"); n != 1 {
		t.Fatalf("%d re-registered lines, want 1:\n%s", n, logged)
	}
	if !strings.Contains(logged, "reconnects=1") {
		t.Fatalf("re-registration line without its count:\n%s", logged)
	}
	if !strings.Contains(logged, `msg="registration lost; re-registering"`) {
		t.Fatalf("no line for the lost registration:\n%s", logged)
	}
}
