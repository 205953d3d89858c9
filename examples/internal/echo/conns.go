package echo

import (
	"net"
	"sync"
)

// conns tracks the connections being echoed, so that shutdown can close
// them and wait for their goroutines. The zero value is ready to use.
type conns struct {
	wg sync.WaitGroup // counts the goroutines that run starts

	mu sync.Mutex // guards m
	m  map[net.Conn]struct{}
}

// run calls f in a new goroutine and tracks c until f returns.
func (cs *conns) run(c net.Conn, f func()) {
	cs.mu.Lock()
	if cs.m == nil {
		cs.m = make(map[net.Conn]struct{})
	}
	cs.m[c] = struct{}{}
	cs.mu.Unlock()
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		f()
		cs.mu.Lock()
		delete(cs.m, c)
		cs.mu.Unlock()
	}()
}

// closeAndWait closes the tracked connections and waits for the
// goroutines that run started.
func (cs *conns) closeAndWait() {
	cs.mu.Lock()
	for c := range cs.m {
		c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}
