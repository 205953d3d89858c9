package endpoints_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// answerOnce starts a loopback server that reads one request head and
// writes answer, then closes. It returns the server's address.
func answerOnce(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, answer)
	}()
	return ln.Addr().String()
}

// TestUpgradeAnswers checks how a dial reads the relay's answer: a 101 is
// parsed by wire.ParseUpgradeResponse, so each malformed or oversized form
// must give ErrProtocol, every other status a *RelayError, and an answer
// without Relay-Node ErrNotRelay.
func TestUpgradeAnswers(t *testing.T) {
	const up = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: clusterlink-relay/1\r\n"
	tests := []struct {
		name     string
		answer   string
		head     string // bytes the conn reads first, for a success
		proto    bool   // an ErrProtocol error
		status   int    // a *RelayError with this status
		notRelay bool   // ErrNotRelay, and no *RelayError
	}{
		{name: "101 with bytes behind", answer: up + "Relay-Node: n\r\n\r\nHELLO", head: "HELLO"},
		{name: "header names any case", answer: "HTTP/1.1 101 Switching Protocols\r\nupgrade: CLUSTERLINK-relay/1\r\n\r\nx", head: "x"},
		{name: "101 without a reason", answer: "HTTP/1.1 101\r\nUpgrade: clusterlink-relay/1\r\n\r\nR", head: "R"},
		{name: "1010 is not 101", answer: "HTTP/1.1 1010 Odd\r\n\r\n", proto: false},
		{name: "bare LF lines", answer: "HTTP/1.1 101 Switching Protocols\nUpgrade: clusterlink-relay/1\n\nLF", head: "LF"},
		{name: "101 without Upgrade", answer: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", proto: true},
		{name: "101 to another protocol", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", proto: true},
		{name: "header line over the buffer", answer: up + "X: " + strings.Repeat("a", 5000) + "\r\n\r\n", proto: true},
		{name: "head over 16 KiB", answer: up + strings.Repeat("X-Filler: "+strings.Repeat("b", 200)+"\r\n", 100) + "\r\n", proto: true},
		{name: "header line without colon", answer: up + "garbage\r\n\r\n", proto: true},
		{name: "cut short", answer: "HTTP/1.1 101 Swit", proto: false},
		{name: "cut in the headers", answer: up, proto: true},
		{name: "refusal", answer: "HTTP/1.1 404 Not Found\r\nRelay-Node: n\r\nContent-Length: 12\r\n\r\nunknown name", status: 404},
		{name: "HTTP/1.0 101 is not ours", answer: "HTTP/1.0 101 Switching Protocols\r\nRelay-Node: n\r\nUpgrade: clusterlink-relay/1\r\n\r\n", status: 101},
		{name: "404 from a server that is not a relay", answer: "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n", notRelay: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := answerOnce(t, tt.answer)
			c, err := endpoints.DialTCP("tcp", "svc", addr, "client")
			switch {
			case tt.head != "":
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				got := make([]byte, len(tt.head))
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != tt.head {
					t.Fatalf("first bytes %q, %v; want %q", got, err, tt.head)
				}
			case tt.status != 0:
				var re *endpoints.RelayError
				if !errors.As(err, &re) || re.Status != tt.status {
					t.Fatalf("dial error %v, want a RelayError %d", err, tt.status)
				}
			case tt.notRelay:
				var re *endpoints.RelayError
				if !errors.Is(err, endpoints.ErrNotRelay) || errors.As(err, &re) {
					t.Fatalf("dial error %v, want ErrNotRelay and no *RelayError", err)
				}
			case tt.proto:
				if !errors.Is(err, endpoints.ErrProtocol) {
					t.Fatalf("dial error %v, want ErrProtocol", err)
				}
			default:
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded on a cut answer")
				}
			}
		})
	}
}
