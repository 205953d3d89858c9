package relaynode

import (
	"context"
	"sync"
	"time"
)

// rateInterval is how often the node samples each name's byte counts for
// the status page's rates: the page refreshes at the same pace.
const rateInterval = 5 * time.Second

// rateSample is each name's bytes relayed (to server, to client) at one
// instant.
type rateSample struct {
	at    time.Time
	bytes map[string][2]int64
}

// rates holds the last two samples. The node's own goroutine takes them
// at a fixed pace, so reading a rate changes nothing: any number of
// scrapers see the same figure, the rate over the last full interval.
type rates struct {
	mu           sync.Mutex // guards older and newer
	older, newer rateSample

	stop chan struct{} // closed by stopSampling
	done chan struct{} // closed when the sampler has returned
	once sync.Once
}

// startSampling starts the sampler of n's rates.
func (n *Node) startSampling() {
	n.rates.stop = make(chan struct{})
	n.rates.done = make(chan struct{})
	go func() {
		defer close(n.rates.done)
		tick := time.NewTicker(rateInterval)
		defer tick.Stop()
		for {
			select {
			case <-n.rates.stop:
				return
			case now := <-tick.C:
				n.sampleRates(now)
			}
		}
	}()
}

// stopSampling stops the sampler and waits for it.
func (n *Node) stopSampling() {
	n.rates.once.Do(func() { close(n.rates.stop) })
	<-n.rates.done
}

// sampleRates takes one sample of every name's bytes, at now.
func (n *Node) sampleRates(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	regs, err := n.engine.Registrations(ctx)
	cancel()
	if err != nil {
		return
	}
	s := rateSample{at: now, bytes: make(map[string][2]int64, len(regs))}
	for _, r := range regs {
		b := s.bytes[r.Name]
		s.bytes[r.Name] = [2]int64{b[0] + r.BytesToServer, b[1] + r.BytesToClient}
	}
	n.rates.mu.Lock()
	n.rates.older, n.rates.newer = n.rates.newer, s
	n.rates.mu.Unlock()
}

// rateOf returns name's bytes per second to server and to client over the
// interval between the last two samples; 0 before there are two, or when
// the name was not registered at both.
func (n *Node) rateOf(name string) (toServer, toClient float64) {
	n.rates.mu.Lock()
	defer n.rates.mu.Unlock()
	o, ok1 := n.rates.older.bytes[name]
	w, ok2 := n.rates.newer.bytes[name]
	dt := n.rates.newer.at.Sub(n.rates.older.at).Seconds()
	if !ok1 || !ok2 || dt <= 0 {
		return 0, 0
	}
	return float64(max(0, w[0]-o[0])) / dt, float64(max(0, w[1]-o[1])) / dt
}
