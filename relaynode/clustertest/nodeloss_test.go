package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// tally counts the outcomes of a stream of pings and keeps the first few
// errors: failed dials, and pairs cut after their dial (a pair spliced on
// a node that dies is lost with it).
type tally struct {
	what          string
	allowCut      int64 // cut pairs allowed: 1 for a dialer that goes through the node killed
	gapStatus     []int // refusal statuses counted apart, as the gap of a move
	ok, fail, cut atomic.Int64
	gap           atomic.Int64
	mu            sync.Mutex
	errs          []string
	gapFirst      time.Time
	gapLast       time.Time
}

func (c *tally) add(err error) {
	if err == nil {
		c.ok.Add(1)
		return
	}
	var cut *cutError
	switch {
	case errors.As(err, &cut):
		c.cut.Add(1)
	case slices.Contains(c.gapStatus, status(err)):
		c.gap.Add(1)
		c.mu.Lock()
		if c.gapFirst.IsZero() {
			c.gapFirst = time.Now()
		}
		c.gapLast = time.Now()
		c.mu.Unlock()
		return
	default:
		c.fail.Add(1)
	}
	c.mu.Lock()
	if len(c.errs) < 5 {
		c.errs = append(c.errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
	}
	c.mu.Unlock()
}

// check fails the test unless every dial succeeded, at least one ran,
// and no more pairs were cut than allowed.
func (c *tally) check(t *testing.T) {
	t.Helper()
	ok, fail, cut, gap := c.ok.Load(), c.fail.Load(), c.cut.Load(), c.gap.Load()
	t.Logf("%s: %d dials, %d failed, %d pairs cut after the dial", c.what, ok+fail+cut+gap, fail, cut)
	if gap > 0 {
		c.mu.Lock()
		t.Logf("%s: %d dials refused %v in the gap of the move, over %v", c.what, gap, c.gapStatus, c.gapLast.Sub(c.gapFirst).Round(time.Millisecond))
		c.mu.Unlock()
	}
	if fail != 0 || ok == 0 || cut > c.allowCut {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Errorf("%s: %d ok, %d failed, %d cut; want all dials ok, some, and at most %d cut; first errors: %q", c.what, ok, fail, cut, c.allowCut, c.errs)
	}
}

// traffic pings name through d in a loop, counting into a tally, until
// stop is closed, at most max times.
func traffic(wg *sync.WaitGroup, stop <-chan struct{}, c *tally, d relaytest.ContextDialer, name string, max int) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range max {
			select {
			case <-stop:
				return
			default:
			}
			c.add(pingVia(d, name))
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

// TestNodeLoss kills one of three nodes (SIGKILL) during traffic and
// checks what a cluster promises when a node dies:
//   - dials to names on the survivors, through the survivors and through
//     a dialer that lists the dead node first, all succeed;
//   - the dead node's names answer 404 (or 503 while its lease runs) from
//     the survivors, each dial within its bound, never a hang, and 404
//     within the lease TTL and a bound;
//   - a listener given several relay URLs moves to a survivor and is
//     reachable again;
//   - a listener with WithRedundancy(2) loses no dial.
//
// Registrations are authenticated (an auth file and a token): only
// authenticated members on different nodes form one group, so only then
// does redundancy hold two registrations of a name in one cluster. The
// times from the kill to 404 and to reachable are logged.
func TestNodeLoss(t *testing.T) {
	authFile, tok := authAll(t)
	c := startCluster(t, 3, "-auth-file", authFile)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	withTok := endpoints.WithToken(tok)
	listenEcho(t, "surv-1", n1.URL, withTok)
	listenEcho(t, "surv-2", n2.URL, withTok)
	listenEcho(t, "gone", n3.URL, withTok)
	listenEcho(t, "moving", urls(n3, n1), withTok)
	listenEcho(t, "redundant", urls(n3, n2, n1), withTok, endpoints.WithRedundancy(2))
	for _, from := range []string{n1.URL, n2.URL} {
		d := dialer(from, "warmup")
		for _, name := range []string{"surv-1", "surv-2", "gone", "moving", "redundant"} {
			waitPing(t, d, name, 10*time.Second)
		}
	}

	ids := []string{n1.ID, n2.ID, n3.ID}
	waitLayout(t, c.nodes, ids, map[string]string{
		"surv-1": n1.ID, "surv-2": n2.ID, "gone": n3.ID, "moving": n3.ID, "redundant": n2.ID + "," + n3.ID,
	}, 5*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var survivors, listed, redundant []*tally
	for _, from := range c.nodes[:2] {
		for _, name := range []string{"surv-1", "surv-2"} {
			k := &tally{what: fmt.Sprintf("%s via %s", name, from.ID)}
			survivors = append(survivors, k)
			traffic(&wg, stop, k, dialer(from.URL, "traffic"), name, 5000)
		}
		k := &tally{what: fmt.Sprintf("redundant via %s", from.ID)}
		redundant = append(redundant, k)
		traffic(&wg, stop, k, dialer(from.URL, "traffic"), "redundant", 5000)
	}
	// A dialer that lists the dead node first moves to the next address.
	// Its pair in flight at the kill, spliced on n3, may be cut.
	k := &tally{what: "surv-1 via n3,n1", allowCut: 1}
	listed = append(listed, k)
	traffic(&wg, stop, k, dialer(addrs(n3, n1), "traffic"), "surv-1", 5000)
	k = &tally{what: "redundant via n3,n2,n1", allowCut: 1}
	redundant = append(redundant, k)
	traffic(&wg, stop, k, dialer(addrs(n3, n2, n1), "traffic"), "redundant", 5000)
	defer func() { // on a Fatal too, so that no dial outlives the test
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(500 * time.Millisecond) // traffic under way
	killed := time.Now()
	n3.Kill()
	t.Logf("killed %s", n3)

	// The dead node's single-URL name, from each survivor: 404 or 503,
	// never a hang, and 404 within the lease TTL and a bound.
	goneBound := leaseTTL + 5*time.Second
	var probes sync.WaitGroup
	gone404 := make([]time.Duration, 2)
	gone503 := make([]int, 2)
	goneSlowest := make([]time.Duration, 2)
	goneErr := make([]error, 2)
	for i, from := range c.nodes[:2] {
		probes.Add(1)
		go func() {
			defer probes.Done()
			gone404[i], gone503[i], goneSlowest[i], goneErr[i] = awaitGone(from.URL, "gone", killed, goneBound)
		}()
	}
	// The listener with two URLs moves to n1: reachable again via n2.
	var moved time.Duration
	var movedErr error
	movedFails := map[int]int{}    // failed pings before the first success, by status
	var movedSlowest time.Duration // the slowest ping before the first success, that one too
	probes.Add(1)
	go func() {
		defer probes.Done()
		d := dialer(n2.URL, "probe")
		deadline := killed.Add(leaseTTL + 10*time.Second)
		for time.Now().Before(deadline) {
			start := time.Now()
			movedErr = pingVia(d, "moving")
			movedSlowest = max(movedSlowest, time.Since(start))
			if movedErr == nil {
				moved = time.Since(killed)
				return
			}
			movedFails[status(movedErr)]++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// The moved registration as the directory shows it: kill→re-registered.
	var rereg time.Duration
	var reregErr error
	probes.Add(1)
	go func() {
		defer probes.Done()
		deadline := killed.Add(leaseTTL + 10*time.Second)
		for time.Now().Before(deadline) {
			cs, err := viewOf(n2)
			if reregErr = err; err == nil {
				_, names := layout(cs)
				if names["moving"] == n1.ID {
					rereg = time.Since(killed)
					return
				}
				reregErr = fmt.Errorf("n2 lists moving on %q", names["moving"])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	probes.Wait()
	// Traffic goes on past the dead node's lease, so that dials picked
	// while its members were still listed are counted too.
	if rest := time.Until(killed.Add(leaseTTL + time.Second)); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	wg.Wait()

	for i, from := range c.nodes[:2] {
		if goneErr[i] != nil {
			t.Errorf("gone via %s: %v", from.ID, goneErr[i])
		} else {
			t.Logf("FAILOVER kill→404 of the dead node's name via %s: %v (%d × 503 before it, the slowest answered in %v)", from.ID, gone404[i].Round(time.Millisecond), gone503[i], goneSlowest[i].Round(time.Millisecond))
		}
	}
	if rereg == 0 {
		t.Errorf("moving not re-registered on n1 within %v of the kill: %v", leaseTTL+10*time.Second, reregErr)
	} else {
		t.Logf("FAILOVER kill→re-registered (n2's directory lists moving on n1): %v", rereg.Round(time.Millisecond))
	}
	if moved == 0 {
		t.Errorf("moving (relay list n3,n1) not reachable via n2 within %v of the kill: %v", leaseTTL+10*time.Second, movedErr)
	} else {
		t.Logf("FAILOVER kill→reachable of the listener with two relay URLs: %v (failed pings before, by status: %v; the slowest ping took %v)", moved.Round(time.Millisecond), movedFails, movedSlowest.Round(time.Millisecond))
	}
	// The survivors' view: two nodes; the dead node's names gone, the
	// moved and the redundant listener on survivors only.
	waitLayout(t, c.nodes[:2], []string{n1.ID, n2.ID}, map[string]string{
		"surv-1": n1.ID, "surv-2": n2.ID, "moving": n1.ID, "redundant": n1.ID + "," + n2.ID,
	}, leaseTTL+5*time.Second)
	for _, k := range survivors {
		k.check(t)
	}
	for _, k := range listed {
		k.check(t)
	}
	for _, k := range redundant {
		k.check(t)
	}
}

// authAll writes an auth file that grants every name to one token, and
// returns its path and the token.
func authAll(t *testing.T) (string, string) {
	tok := "clustertest-" + wire.NewToken().String()
	sum := sha256.Sum256([]byte(tok))
	p := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(p, []byte("register * "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, tok
}

// awaitGone dials name through the relay at url until it answers 404,
// within bound of killed, and returns the time from killed to that 404
// and the number of 503s before it and the longest any dial took.
// Before it, only 503 is allowed, each dial answered within dialBound: a
// success, another status or a dial that times out is an error. Three
// more dials after the first 404 must be 404 too.
func awaitGone(url, name string, killed time.Time, bound time.Duration) (after time.Duration, n503 int, slowest time.Duration, err error) {
	d := dialer(url, "probe")
	deadline := killed.Add(bound)
	for time.Now().Before(deadline) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), dialBound)
		conn, err := d.DialContext(ctx, "tcp", name)
		cancel()
		took := time.Since(start)
		slowest = max(slowest, took)
		if err == nil {
			// A stale listing might still reach a live callback; the
			// server behind name is dead, so this is wrong.
			conn.Close()
			return 0, n503, slowest, fmt.Errorf("dial succeeded %v after the kill", time.Since(killed))
		}
		switch status(err) {
		case http.StatusNotFound:
			at := time.Since(killed)
			for range 3 {
				if err := pingVia(d, name); status(err) != http.StatusNotFound {
					return 0, n503, slowest, fmt.Errorf("404 at %v, then: %v", at, err)
				}
			}
			return at, n503, slowest, nil
		case http.StatusServiceUnavailable:
			n503++
		default:
			return 0, n503, slowest, fmt.Errorf("dial after %v answered in %v: %v; want 404 or 503", time.Since(killed), took, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, n503, slowest, fmt.Errorf("no 404 within %v of the kill (%d × 503)", bound, n503)
}
