package relaynode_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

// TestS7MalformedRequests sends malformed requests of every kind, each
// answered with its own status (truncated ones may get no answer), while a
// healthy name keeps being dialed; afterwards a dial works and the heap has
// not grown.
func TestS7MalformedRequests(t *testing.T) {
	n := hostileSize(1000, 300)
	r := relaytest.Start(t, relaynode.Config{DialRate: -1})
	hostileEcho(t, r.URL, "healthy")
	tok := wire.NewToken().String()
	reg := wire.HeaderRegistration + ": " + wire.NewToken().String()
	body := func(path, ctype, b string, headers ...string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: relay\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
			path, strings.Join(append(headers, ""), "\r\n"), ctype, len(b), b)
	}
	manyHeaders := strings.Repeat("X-N: v\r\n", 2500)
	kinds := []struct {
		name      string
		raw       string
		want      int
		truncated bool // then no answer, or net/http's 400, is right
	}{
		{"big header", relaytest.Request("POST", "/v1/dial/x", relaytest.UpgradeHeaders, "X-Big: "+strings.Repeat("b", 16<<10)), 431, false},
		{"big request line", relaytest.Request("POST", "/v1/listen/"+strings.Repeat("n", 20<<10)), 431, false},
		{"many headers", relaytest.Request("POST", "/v1/listen/x", strings.TrimSuffix(manyHeaders, "\r\n")), 431, false},
		{"body on dial", body("/v1/dial/x", "text/plain", "0123456789", relaytest.UpgradeHeaders), 413, false},
		{"body on listen", body("/v1/listen/x", "text/plain", "0123456789"), 413, false},
		{"body on accept", body("/v1/accept/"+tok, "text/plain", "0123456789", relaytest.UpgradeHeaders, reg), 413, false},
		{"json body", body("/v1/listen/x", "application/json", `{"name":"x","token":`), 413, false},
		{"chunked body", "POST /v1/listen/x HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413, false},
		{"json request line", `{"op":"dial","name":"x"}` + "\r\n\r\n", 400, false},
		{"binary request line", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8e\x00\xff\x13\x01\r\n\r\n", 400, false},
		{"bad header line", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n", 400, false},
		{"header with NUL", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nX-A: a\x00b\r\n\r\n", 400, false},
		{"two content lengths", "POST /v1/dial/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, false},
		{"HTTP/1.1 without Host", "POST /v1/dial/x HTTP/1.1\r\n" + relaytest.UpgradeHeaders + "\r\n\r\n", 400, false},
		{"HTTP/1.0 without Host", "POST /v1/dial/x HTTP/1.0\r\n\r\n", 426, false},
		{"HTTP/2.0 request line", "POST /v1/dial/x HTTP/2.0\r\nHost: relay\r\n\r\n", 505, false},
		{"GET dial", relaytest.Request("GET", "/v1/dial/x", relaytest.UpgradeHeaders), 405, false},
		{"PUT listen", relaytest.Request("PUT", "/v1/listen/x"), 405, false},
		{"DELETE accept", relaytest.Request("DELETE", "/v1/accept/"+tok, relaytest.UpgradeHeaders, reg), 405, false},
		{"unknown route", relaytest.Request("POST", "/v2/dial/x", relaytest.UpgradeHeaders), 404, false},
		{"root", relaytest.Request("GET", "/"), 404, false},
		{"metrics on public", relaytest.Request("GET", "/metrics"), 404, false},
		{"dial without upgrade", relaytest.Request("POST", "/v1/dial/healthy"), 426, false},
		{"dial bad client name", relaytest.Request("POST", "/v1/dial/healthy", relaytest.UpgradeHeaders, wire.HeaderClientName+": a/b"), 400, false},
		{"accept bad token", relaytest.Request("POST", "/v1/accept/not-a-token", relaytest.UpgradeHeaders, reg), 400, false},
		{"accept without registration", relaytest.Request("POST", "/v1/accept/"+tok, relaytest.UpgradeHeaders), 400, false},
		{"accept bad registration", relaytest.Request("POST", "/v1/accept/"+tok, relaytest.UpgradeHeaders, wire.HeaderRegistration+": x"), 400, false},
		{"truncated request line", "POST /v1/di", 0, true},
		{"truncated headers", "POST /v1/dial/healthy HTTP/1.1\r\nHost: relay\r\nUpgr", 0, true},
		{"truncated body", "POST /v1/listen/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 10\r\n\r\n012", 413, true},
	}
	const bound = 5 * time.Second
	if err := hostilePing(r.Addr, "healthy"); err != nil { // warm up before the baseline
		t.Fatalf("first dial: %v", err)
	}
	before := hostileReadMem()

	// The healthy name, dialed over and over meanwhile.
	stop := make(chan struct{})
	var (
		wg            sync.WaitGroup
		healthy       int
		healthyErr    error
		ok, failed    [64]atomic.Int64
		wrong         hostileTally
		truncAnswered atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := hostilePing(r.Addr, "healthy"); err != nil {
				healthyErr = err
				return
			}
			healthy++
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	hostileWork(8, n, func(i int) bool {
		k := kinds[i%len(kinds)]
		var a relaytest.Answer
		if k.truncated {
			a = hostileTruncated(r.Addr, k.raw, bound)
		} else {
			a = relaytest.Do(r.Addr, k.raw, bound)
		}
		switch {
		case a.Status == k.want && a.Status != 0:
			ok[i%len(kinds)].Add(1)
		case k.truncated && (a.Status == 0 && a.Err == nil || a.Status == http.StatusBadRequest):
			ok[i%len(kinds)].Add(1)
			truncAnswered.Add(int64(min(a.Status, 1)))
		default:
			failed[i%len(kinds)].Add(1)
			wrong.add(fmt.Sprintf("%s: %v", k.name, a))
		}
		return true
	})
	close(stop) // then the healthy dials
	wg.Wait()
	elapsed := time.Since(start)
	if healthyErr != nil {
		t.Errorf("a healthy dial failed during the malformed requests: %v", healthyErr)
	}
	var b strings.Builder
	total := 0
	for i, k := range kinds {
		if failed[i].Load() > 0 {
			t.Errorf("%s: %d of %d wrong", k.name, failed[i].Load(), ok[i].Load()+failed[i].Load())
		}
		total += int(ok[i].Load())
		want := fmt.Sprint(k.want)
		if k.truncated && k.want == 0 {
			want = "(none or 400)"
		}
		fmt.Fprintf(&b, " %s=%d×%s", k.name, ok[i].Load(), want)
	}
	if total != n {
		t.Errorf("%d of %d malformed requests answered right; wrong: %s", total, n, &wrong)
	}
	if err := hostilePing(r.Addr, "healthy"); err != nil {
		t.Errorf("dial after the malformed requests: %v", err)
	}
	after := hostileReadMem()
	t.Logf("%d malformed requests in %v, %d kinds, all right:%s", n, elapsed.Round(time.Millisecond), len(kinds), b.String())
	t.Logf("truncated requests answered 400 (the rest closed unanswered): %d", truncAnswered.Load())
	t.Logf("healthy dials meanwhile: %d, all ok", healthy)
	t.Logf("heap after GC: before %.2f MiB, after %.2f MiB (%+.2f MiB)",
		float64(before.heap)/(1<<20), float64(after.heap)/(1<<20), hostileMiB(before.heap, after.heap))
	if grown := hostileMiB(before.heap, after.heap); grown > 4 {
		t.Errorf("heap grew %.2f MiB over %d malformed requests, want at most 4 MiB", grown, n)
	}
}

// hostileTruncated sends part of a request, half-closes and reads what
// comes back: nothing (status 0, err nil) or an answer.
func hostileTruncated(addr, partial string, bound time.Duration) relaytest.Answer {
	c, err := relaytest.DialRaw(nil, addr, bound)
	if err != nil {
		return relaytest.Answer{Err: err}
	}
	defer c.Close()
	if err := c.Send(partial); err != nil {
		return relaytest.Answer{Err: err}
	}
	if err := relaytest.HalfClose(c.Conn); err != nil {
		return relaytest.Answer{Err: err}
	}
	got, err := io.ReadAll(c.R)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return relaytest.Answer{Err: err} // e.g. the deadline: the relay held it
	}
	if len(got) == 0 {
		return relaytest.Answer{}
	}
	return relaytest.ReadAnswer(bufio.NewReader(strings.NewReader(string(got))))
}
