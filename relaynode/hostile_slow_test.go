package relaynode_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestD1Slowloris opens connections that send a request header one byte
// every 500ms on each route (and some that send nothing), against a relay
// with a 1s header timeout: the relay cuts each of them (the test's own
// bound, 10s past the timeout, only guards against a hang), while a
// healthy name's dials all succeed.
func TestD1Slowloris(t *testing.T) {
	const (
		rht   = time.Second
		every = 500 * time.Millisecond
		hang  = rht + 10*time.Second // a bound against hangs, not a timing
	)
	n := hostileSize(200, 50)
	r := relaytest.Start(t, relaynode.Config{ReadHeaderTimeout: rht})
	hostileEcho(t, r.URL, "healthy")
	tok := wire.NewToken().String()
	kinds := []struct{ name, prefix string }{
		{"listen header", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nX-Slow: "},
		{"dial header", "POST /v1/dial/healthy HTTP/1.1\r\nHost: relay\r\n" + relaytest.UpgradeHeaders + "\r\nX-Slow: "},
		{"accept header", "POST /v1/accept/" + tok + " HTTP/1.1\r\nHost: relay\r\n" + relaytest.UpgradeHeaders + "\r\nX-Slow: "},
		{"request line", "POST /v1/dial/slo"},
		{"silent", ""},
	}
	type result struct {
		cut   bool
		after time.Duration
		got   string
		err   error
	}
	results := make([]result, n)
	var wg, opened sync.WaitGroup
	opened.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := kinds[i%len(kinds)]
			start := time.Now()
			c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
			if err != nil {
				opened.Done()
				results[i] = result{err: err}
				return
			}
			defer c.Close()
			_, err = io.WriteString(c, k.prefix)
			opened.Done()
			if err != nil {
				results[i] = result{err: err}
				return
			}
			buf := make([]byte, 512)
			var got []byte
			for time.Since(start) < hang {
				_ = c.SetReadDeadline(time.Now().Add(every))
				m, err := c.Read(buf)
				got = append(got, buf[:m]...)
				var ne net.Error
				switch {
				case err == nil:
					continue
				case errors.As(err, &ne) && ne.Timeout():
					if k.prefix == "" {
						continue
					}
					if _, err := c.Write([]byte{'s'}); err != nil {
						results[i] = result{cut: true, after: time.Since(start), got: string(got), err: err}
						return
					}
				default:
					results[i] = result{cut: true, after: time.Since(start), got: string(got), err: err}
					return
				}
			}
			results[i] = result{after: time.Since(start), got: string(got)}
		}()
	}
	opened.Wait()
	healthy, healthyErr := hostilePings(r.Addr, "healthy", 50, 10*time.Millisecond)
	wg.Wait()

	for j, k := range kinds {
		var worst time.Duration
		var count, resets int
		answers := map[string]int{}
		for i := j; i < n; i += len(kinds) {
			res := results[i]
			switch {
			case !res.cut:
				t.Errorf("%s #%d: not cut after %v (%v), header timeout %v", k.name, i, res.after.Round(time.Millisecond), res.err, rht)
			}
			count++
			worst = max(worst, res.after)
			if res.got != "" {
				line, _, _ := strings.Cut(res.got, "\r\n")
				answers[line]++
			}
			if errors.Is(res.err, syscall.ECONNRESET) || errors.Is(res.err, syscall.EPIPE) {
				resets++
			}
		}
		t.Logf("slowloris %-13s %3d conns: all cut, latest after %v (header timeout %v); answered first: %v; ended by reset: %d",
			k.name, count, worst.Round(time.Millisecond), rht, answers, resets)
	}
	if healthyErr != nil || healthy != 50 {
		t.Errorf("healthy dials during the slowloris: %d ok, then %v", healthy, healthyErr)
	}
	t.Logf("healthy dials meanwhile: %d/50 ok", healthy)
}

// TestD2SlowBody sends requests that announce a body and send it slowly:
// each is refused 413 before the body is in, and the relay then lets go
// of the connection.
func TestD2SlowBody(t *testing.T) {
	r := relaytest.Start(t, relaynode.Config{})
	tok := wire.NewToken().String()
	reg := wire.HeaderRegistration + ": " + wire.NewToken().String()
	const (
		every = 50 * time.Millisecond // 1,000 bytes: 50s
		bound = 10 * time.Second      // a bound against hangs: 200 bytes at most

	)
	kinds := []struct{ name, head string }{
		{"listen", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n"},
		{"dial", "POST /v1/dial/slow HTTP/1.1\r\nHost: relay\r\n" + relaytest.UpgradeHeaders + "\r\nContent-Length: 1000\r\n\r\n"},
		{"accept", "POST /v1/accept/" + tok + " HTTP/1.1\r\nHost: relay\r\n" + relaytest.UpgradeHeaders + "\r\n" + reg + "\r\nContent-Length: 1000\r\n\r\n"},
		{"dial expect-continue", "POST /v1/dial/slow HTTP/1.1\r\nHost: relay\r\n" + relaytest.UpgradeHeaders + "\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n"},
		{"listen chunked", "POST /v1/listen/slow HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"},
	}
	type result struct {
		answer relaytest.Answer
		sent   int64         // body bytes sent before the answer
		cutErr error         // how the connection ended after the answer
		cutIn  time.Duration // from the answer to that end
	}
	run := func(head string) result {
		c, err := net.DialTimeout("tcp", r.Addr, bound)
		if err != nil {
			return result{answer: relaytest.Answer{Err: err}}
		}
		defer c.Close()
		if _, err := io.WriteString(c, head+"x"); err != nil {
			return result{answer: relaytest.Answer{Err: err}}
		}
		var sent atomic.Int64
		sent.Store(1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the body, one byte at a time, until the relay lets go
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for sent.Load() < 1000 {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		defer wg.Wait()
		defer close(stop)
		_ = c.SetReadDeadline(time.Now().Add(bound))
		br := bufio.NewReader(c)
		res := result{answer: relaytest.ReadAnswer(br), sent: sent.Load()}
		answered := time.Now()
		_ = c.SetReadDeadline(answered.Add(bound))
		_, err = io.Copy(io.Discard, br)
		res.cutErr, res.cutIn = err, time.Since(answered)
		if err == nil {
			res.cutErr = io.EOF
		}
		return res
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			res := run(k.head)
			a := res.answer
			if a.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("slow body: %v, want 413", a)
			}
			if res.sent >= 1000 {
				t.Errorf("413 after all %d body bytes: the relay waited for the body", res.sent)
			}
			t.Logf("413 %q after %v, %d of 1000 body bytes sent", a.Reason, a.Took.Round(time.Microsecond), res.sent)
			t.Run("cut", func(t *testing.T) {
				var ne net.Error
				held := errors.As(res.cutErr, &ne) && ne.Timeout()
				if held {
					t.Errorf("connection still open %v after the 413", res.cutIn.Round(time.Millisecond))
				}
				t.Logf("connection ended %v after the 413 (%v)", res.cutIn.Round(time.Millisecond), res.cutErr)
			})
		})
	}
}
