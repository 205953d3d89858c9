package endpoints_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
	"go.uber.org/goleak"
)

// TestListenerCloseDuringAccept is C3(a): Close unblocks an Accept with
// net.ErrClosed, and a second Close is harmless.
func TestListenerCloseDuringAccept(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			_, ln, _ := newPair(t, tr)
			accepted := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				accepted <- err
			}()
			if err := ln.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-accepted:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(ioTimeout): // a bound against hangs
				t.Fatalf("Accept did not return within %v of Close", ioTimeout)
			}
			if err := ln.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestDialCancelled is C3(b) and C3(c): a dial with a cancelled context
// returns context.Canceled without reaching the relay, and a dial cancelled
// while it waits for the server's callback returns context.Canceled; the
// relay forgets the pending dial.
func TestDialCancelled(t *testing.T) {
	for _, tr := range transports {
		t.Run("before/"+tr.name, func(t *testing.T) {
			r, _, d := newPair(t, tr)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			c, err := d.DialContext(ctx, "tcp", serverName)
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("dial with a cancelled context: %v, want context.Canceled", err)
			}
			if got := r.Node.Stats().Actors.Kinds[actors.KindPending].Processed; got != 0 {
				t.Errorf("the relay saw a pending dial (%d messages)", got)
			}
		})
	}

	// The raw server never calls back, so the dial is surely waiting.
	t.Run("deadline-while-waiting", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		raw := rawListen(t, r.Addr, serverName)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		dialed := goDial(t, ctx, tcpTransport.dialer(t, r, clientName))
		raw.nextConnect(t)
		dr := waitDial(t, dialed, 2*time.Second)
		var ne net.Error
		if !errors.As(dr.err, &ne) || !ne.Timeout() {
			t.Errorf("dial past its context deadline: %v is not a net.Error with Timeout()", dr.err)
		}
		relaytest.Eventually(t, 5*time.Second, func() bool { return liveActors(r, actors.KindPending) == 0 },
			"the relay kept the abandoned dial pending")
	})

	t.Run("deadline-is-context-error", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		raw := rawListen(t, r.Addr, serverName)
		d := tcpTransport.dialer(t, r, clientName)
		const attempts = 20
		wrong := 0
		var last error
		for range attempts {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			dialed := goDial(t, ctx, d)
			raw.nextConnect(t)
			dr := waitDial(t, dialed, 2*time.Second)
			cancel()
			if !errors.Is(dr.err, context.DeadlineExceeded) {
				wrong++
				last = dr.err
			}
		}
		if wrong > 0 {
			t.Errorf("%d of %d dials past their context deadline did not return context.DeadlineExceeded; last: %v",
				wrong, attempts, last)
		}
	})

	t.Run("while-waiting", func(t *testing.T) {
		r := relaytest.Start(t, relaynode.Config{})
		raw := rawListen(t, r.Addr, serverName)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dialed := goDial(t, ctx, tcpTransport.dialer(t, r, clientName))
		ce := raw.nextConnect(t)
		// The pending actor counts itself live when it starts, which may
		// come just after the event.
		relaytest.Eventually(t, 5*time.Second, func() bool { return liveActors(r, actors.KindPending) == 1 },
			"no live pending dial while the dial waits")
		cancel()
		dr := waitDial(t, dialed, 2*time.Second)
		if !errors.Is(dr.err, context.Canceled) {
			t.Errorf("dial cancelled while waiting: %v, want context.Canceled", dr.err)
		}
		relaytest.Eventually(t, 5*time.Second, func() bool { return liveActors(r, actors.KindPending) == 0 },
			"the relay kept the cancelled dial pending")
		// The token died with the dial.
		status, conn, _ := rawAccept(t, r.Addr, ce.Token, raw.regID, nil)
		if conn != nil {
			conn.Close()
		}
		if status != http.StatusGone && status != http.StatusNotFound {
			t.Errorf("callback for the cancelled dial: status %d, want 410 or 404", status)
		}
	})
}

// TestErrors checks the errors callers branch on.
func TestErrors(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			r, ln, d := newPair(t, tr)
			serveEcho(t, ln)

			t.Run("unknown-name", func(t *testing.T) {
				c, err := d.Dial("tcp", "nobody")
				if c != nil {
					c.Close()
				}
				var re *endpoints.RelayError
				if !errors.As(err, &re) || re.Status != http.StatusNotFound {
					t.Fatalf("dial unknown name: %v, want *RelayError 404", err)
				}
				if re.Timeout() || re.Temporary() {
					t.Errorf("404: Timeout() %v Temporary() %v, want false", re.Timeout(), re.Temporary())
				}
			})

			t.Run("name-taken", func(t *testing.T) {
				ln2, err := tr.listen(t, r, serverName)
				if ln2 != nil {
					ln2.Close()
				}
				var re *endpoints.RelayError
				if !errors.As(err, &re) || re.Status != http.StatusConflict {
					t.Fatalf("second listen of a live name: %v, want *RelayError 409", err)
				}
				echoOnce(t, d, "still here")
			})

			bad := []struct {
				name, relay, network string
				want                 error
			}{
				{"no-port", "nohostport", "tcp", endpoints.ErrBadRelayAddress},
				{"ftp-scheme", "ftp://x:1", "tcp", endpoints.ErrBadRelayAddress},
				{"path", "http://" + r.Addr + "/v1", "tcp", endpoints.ErrBadRelayAddress},
				{"udp", r.Addr, "udp", endpoints.ErrUnsupportedNetwork},
				{"unix", r.Addr, "unix", endpoints.ErrUnsupportedNetwork},
			}
			for _, bc := range bad {
				t.Run(bc.name, func(t *testing.T) {
					c, err := endpoints.NewRelayDialer(bc.relay, clientName).Dial(bc.network, serverName)
					if c != nil {
						c.Close()
					}
					if !errors.Is(err, bc.want) {
						t.Errorf("dial: %v, want %v", err, bc.want)
					}
					l, err := endpoints.ListenRelay(bc.network, "fresh", bc.relay)
					if l != nil {
						l.Close()
					}
					if !errors.Is(err, bc.want) {
						t.Errorf("listen: %v, want %v", err, bc.want)
					}
				})
			}

			t.Run("conn-errors", func(t *testing.T) {
				c, err := d.Dial("tcp", serverName)
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				if err := c.SetReadDeadline(time.Now()); err != nil {
					t.Fatal(err)
				}
				var b [1]byte
				_, err = c.Read(b[:])
				var ne net.Error
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("read past the deadline: %v, want os.ErrDeadlineExceeded and Timeout()", err)
				}
				c.Close()
				if _, err := c.Read(b[:]); !errors.Is(err, net.ErrClosed) {
					t.Errorf("read after Close: %v, want net.ErrClosed", err)
				}
				if _, err := c.Write(b[:]); !errors.Is(err, net.ErrClosed) {
					t.Errorf("write after Close: %v, want net.ErrClosed", err)
				}
			})

			t.Run("bad-names", func(t *testing.T) {
				for _, name := range []string{"", "-x", "a b", "a/b"} {
					if c, err := d.Dial("tcp", name); err == nil {
						c.Close()
						t.Errorf("dial %q: no error", name)
					} else if !errors.Is(err, wire.ErrBadName) {
						t.Errorf("dial %q: %v, want wire.ErrBadName", name, err)
					}
				}
			})
		})
	}
}

// echoOnce dials serverName, which must echo, and checks one message.
func echoOnce(t testing.TB, d contextDialer, msg string) {
	t.Helper()
	c, err := d.Dial("tcp", serverName)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(closeWriter).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	readExactlyThenEOF(t, "echo", c, []byte(msg))
}

// TestFailedCallbackKeepsAccepting checks that a failed callback is counted
// and never ends Accept. The failure is provoked with a raw dial that hangs
// up at once: the relay cancels it, and the listener's callback is refused.
func TestFailedCallbackKeepsAccepting(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// A callback may beat the cancel to the relay; the conn it
			// gets is cut at the callback deadline, kept short here.
			r, ln, d := newPairWith(t, tr, pairConfig{relay: relaynode.Config{Limits: actors.Limits{CallbackTimeout: 2 * time.Second}}})
			srv := serveEcho(t, ln)
			failed := ln.(failedCounter)
			const maxAttempts = 50
			attempts := 0
			for ; attempts < maxAttempts && failed.Failed() == 0; attempts++ {
				conn := tr.rawRelayConn(t, r)
				req := "POST " + wire.PathDial + serverName + " HTTP/1.1\r\nHost: " + r.Addr +
					"\r\nConnection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol + "\r\nContent-Length: 0\r\n\r\n"
				_, err := io.WriteString(conn, req)
				conn.Close()
				if err != nil {
					t.Fatal(err)
				}
				// Wait for this attempt's outcome: a failed callback, or
				// a callback that won and was accepted.
				before := srv.Accepted()
				relaytest.Eventually(t, 5*time.Second, func() bool {
					return failed.Failed() > 0 || srv.Accepted() > before || liveActors(r, actors.KindPending) == 0
				}, "the hung-up dial had no outcome")
			}
			relaytest.Eventually(t, 5*time.Second, func() bool { return failed.Failed() >= 1 },
				"no callback failed")
			t.Logf("a callback failed after %d attempts, %d conns accepted", attempts, srv.Accepted())
			echoOnce(t, d, "after a failed callback")
		})
	}
}

// TestRemoteAddr checks that an accepted conn reports the dialing client's
// socket address as the relay saw it, and the client's name.
func TestRemoteAddr(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			_, ln, d := newPair(t, tr)
			c, err := d.Dial("tcp", serverName)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			sc := acceptOne(t, ln)
			// Over MTLS both ends are *tls.Conn; the relayed conn is
			// their NetConn.
			for what, c := range map[string]net.Conn{"dialed": c, "accepted": sc} {
				_, isTLS := c.(*tls.Conn)
				if isTLS != tr.mtls {
					t.Errorf("%s conn is %T; mtls transport: %v", what, c, tr.mtls)
				}
			}
			dc, ac := relayed(t, c), relayed(t, sc)
			if got, want := sc.RemoteAddr().String(), ac.RemoteAddr().String(); got != want {
				t.Errorf("accepted conn's RemoteAddr %q, its relayed conn's %q", got, want)
			}
			if got, want := ac.RemoteAddr().String(), dc.NetConn().LocalAddr().String(); got != want {
				t.Errorf("accepted RemoteAddr %q, want the client's socket %q", got, want)
			}
			if got := ac.ClientName(); got != clientName {
				t.Errorf("accepted ClientName %q, want %q", got, clientName)
			}
			if got := ac.Name(); got != serverName {
				t.Errorf("accepted Name %q, want %q", got, serverName)
			}
			if got := dc.Name(); got != serverName {
				t.Errorf("dialed Name %q, want %q", got, serverName)
			}
			if got := ln.Addr().String(); got != serverName+"@"+ln.Addr().(endpoints.Addr).Relay {
				t.Errorf("listener Addr %q", got)
			}
		})
	}
}

// TestRelayCloseLeavesNoGoroutine checks that once a listener and then its
// relay are closed, no goroutine of theirs is left, as goleak in TestMain
// requires (TestMain ignores the one goroutine this test is about).
func TestRelayCloseLeavesNoGoroutine(t *testing.T) {
	const iterations = 200
	for i := range iterations {
		before := goleak.IgnoreCurrent()
		r := relaytest.Start(t, relaynode.Config{})
		ln, err := tcpTransport.listen(t, r, serverName)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		ln.Close()
		r.Close()
		if err := goleak.Find(before); err != nil {
			t.Fatalf("iteration %d: goroutines left after the listener and the relay closed: %v", i, err)
		}
	}
}

// TestHungUpDialIsForgotten checks that a client that hangs up right after
// its dial request leaves nothing behind at the relay: the pending dial
// ends well before its 1-minute deadline, and the server's callback for it
// is refused, or, when it won the race against the relay noticing the
// hang-up, its conn is cut at once rather than at the deadline.
func TestHungUpDialIsForgotten(t *testing.T) {
	const iterations = 200
	r := relaytest.Start(t, relaynode.Config{Limits: actors.Limits{CallbackTimeout: time.Minute}})
	raw := rawListen(t, r.Addr, serverName)
	req := "POST " + wire.PathDial + serverName + " HTTP/1.1\r\nHost: " + r.Addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + wire.UpgradeProtocol + "\r\nContent-Length: 0\r\n\r\n"
	refused, cut := 0, 0
	for i := range iterations {
		conn, err := net.DialTimeout("tcp", r.Addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.WriteString(conn, req)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		ce := raw.nextConnect(t)
		relaytest.Eventually(t, 3*time.Second, func() bool { return liveActors(r, actors.KindPending) == 0 },
			fmt.Sprintf("iteration %d: the hung-up dial is still pending (CallbackTimeout 1m)", i))
		status, sconn, _ := rawAccept(t, r.Addr, ce.Token, raw.regID, nil)
		switch status {
		case http.StatusGone, http.StatusNotFound:
			refused++
		case http.StatusSwitchingProtocols:
			sconn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := sconn.Read(make([]byte, 1))
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("iteration %d: spliced to a hung-up client and not cut within 3s: read %d, %v", i, n, err)
			}
			cut++
		default:
			t.Fatalf("iteration %d: callback for the hung-up dial: status %d, want 410, 404 or a 101 cut at once", i, status)
		}
		if sconn != nil {
			sconn.Close()
		}
	}
	t.Logf("%d callbacks refused, %d spliced and cut at once", refused, cut)
	relaytest.Eventually(t, 3*time.Second, func() bool { return liveActors(r, actors.KindPair) == 0 }, "pairs left")
}
