package clustertest

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestConflictOneWinner registers one name, unauthenticated, on two nodes
// at the same instant, 100 times with 100 names: each time exactly one
// registration gets 200 and the other 409, and a third try on either
// node gets 409 too, as the name is held cluster-wide.
func TestConflictOneWinner(t *testing.T) {
	c := startCluster(t, 2)
	const runs = 100
	var wins int
	var winsBy [2]int
	for run := range runs {
		name := fmt.Sprintf("race-%03d", run)
		// Both connections are open before the start, so that the two
		// requests leave at the same instant.
		var conns [2]*relaytest.Conn
		for i, n := range c.nodes {
			conn, err := relaytest.DialRaw(nil, n.Addr, dialBound)
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			conns[i] = conn
		}
		var answers [2]relaytest.Answer
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := conns[i].Send(relaytest.ListenRequest(name)); err != nil {
					answers[i] = relaytest.Answer{Err: err}
					return
				}
				answers[i] = conns[i].Answer(dialBound)
			}()
		}
		close(start)
		wg.Wait()
		won, lost := -1, -1
		for i, a := range answers {
			switch a.Status {
			case http.StatusOK:
				if won >= 0 {
					t.Errorf("%s: registered on both nodes", name)
				}
				won = i
			case http.StatusConflict:
				lost = i
			default:
				t.Errorf("%s on %s: %v; want 200 or 409", name, c.nodes[i].ID, a)
			}
		}
		if won >= 0 && lost >= 0 {
			wins++
			winsBy[won]++
			// With the winner's stream open, the name is taken on both.
			for _, n := range c.nodes {
				if s, a := relaytest.Listen(nil, n.Addr, name, dialBound); s != nil || a.Status != http.StatusConflict {
					if s != nil {
						s.Close()
					}
					t.Errorf("%s held on %s: a third registration on %s got %v; want 409", name, c.nodes[won].ID, n.ID, a)
				}
			}
		}
		for _, conn := range conns {
			conn.Close()
		}
		if t.Failed() {
			break
		}
	}
	t.Logf("%d runs: %d with exactly one winner (n1 won %d, n2 %d)", runs, wins, winsBy[0], winsBy[1])
	if wins != runs {
		t.Fatalf("%d of %d runs had exactly one winner and one 409", wins, runs)
	}
}
