package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// inflight is the one locked table of the engine: what Close must reach
// that no actor can hand it, because Close stops the actors first and Stop
// drops their queued messages. It holds the Pairings matched and not yet
// complete or failed, and the pair actors alive, and counts their pumps.
//
// Its rule: a Pairing adds itself when it is made and removes itself when
// it completes or fails; a pair is added, with its two pumps counted,
// before it is spawned (its PID recorded after), and removed by its own
// Stopped. Once close has run,
// nothing is added: add and addPair report false and the caller fails the
// Pairing, or closes the pair's conns, itself. No actor reads or changes
// another's state through it: close only fails Pairings (their own
// method) and sends each pair an abortMsg.
type inflight struct {
	pumps sync.WaitGroup // the pairs' copy goroutines

	mu       sync.Mutex // guards the following
	closed   bool
	pairings map[*Pairing]struct{}
	pairs    map[*pair]*actor.PID // nil: counted, being spawned
}

func newInflight() *inflight {
	return &inflight{pairings: make(map[*Pairing]struct{}), pairs: make(map[*pair]*actor.PID)}
}

// add records a new Pairing; false after close.
func (f *inflight) add(p *Pairing) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.pairings[p] = struct{}{}
	return true
}

// done forgets a Pairing that completed or failed.
func (f *inflight) done(p *Pairing) {
	f.mu.Lock()
	delete(f.pairings, p)
	f.mu.Unlock()
}

// addPair counts pa's two pumps, under the lock close reads closed with
// (close never waits on the pumps while a pair could still be counted),
// then spawns it with spawn and records its PID. The spawn runs outside
// the lock: a pair's messages run on their senders' goroutines (Started on
// this one), and a pair that ends at once reaches pairDone, which takes
// the lock. A close that ran meanwhile did not see the PID, so the pair is
// sent abort here instead. It reports false after close, and spawns
// nothing.
func (f *inflight) addPair(pa *pair, spawn func() *actor.PID, abort func(*actor.PID)) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	f.pumps.Add(2)
	f.pairs[pa] = nil
	f.mu.Unlock()
	pid := spawn()
	f.mu.Lock()
	_, live := f.pairs[pa]
	if live {
		f.pairs[pa] = pid
	}
	missed := live && f.closed
	f.mu.Unlock()
	if missed {
		abort(pid)
	}
	return true
}

// pairDone forgets a pair; called by its own Stopped.
func (f *inflight) pairDone(pa *pair) {
	f.mu.Lock()
	delete(f.pairs, pa)
	f.mu.Unlock()
}

// close refuses further additions and returns what is still in flight.
func (f *inflight) close() ([]*Pairing, []*actor.PID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	pairings := make([]*Pairing, 0, len(f.pairings))
	for p := range f.pairings {
		pairings = append(pairings, p)
	}
	pairs := make([]*actor.PID, 0, len(f.pairs))
	for _, pid := range f.pairs {
		if pid != nil { // one being spawned: addPair aborts it
			pairs = append(pairs, pid)
		}
	}
	return pairings, pairs
}
