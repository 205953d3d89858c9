package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// TestFlaglessBinaryLoad runs the binary with no limit flag (only
// -listen) and dials it a few thousand times from one host, as a load test
// does: 32 concurrent loops of dial, 1-byte echo, close. Every dial must
// go through: the defaults never refuse one legitimate host. Then a dial
// to an unknown name gets 404, not 429.
func TestFlaglessBinaryLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and dials it a few thousand times")
	}
	const loops, dials = 32, 3000
	p := startRelay(t, build(t), "-listen", "127.0.0.1:0")
	ln, err := endpoints.ListenRelay("tcp", "load", "http://"+p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // against hangs only
	defer cancel()
	d := endpoints.NewRelayDialer(p.addr, "load-test", endpoints.WithDialTimeout(30*time.Second))
	var next, ok atomic.Int64
	var mu sync.Mutex
	statuses := map[int]int{} // refusal status → count; 0 for other errors
	var firstErr error
	var wg sync.WaitGroup
	for range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1)
			for next.Add(1) <= dials && ctx.Err() == nil {
				err := func() error {
					c, err := d.DialContext(ctx, "tcp", "load")
					if err != nil {
						return err
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(30 * time.Second))
					if _, err := c.Write([]byte{'x'}); err != nil {
						return err
					}
					_, err = io.ReadFull(c, b)
					return err
				}()
				if err == nil {
					ok.Add(1)
					continue
				}
				var re *endpoints.RelayError
				st := 0
				if errors.As(err, &re) {
					st = re.Status
				}
				mu.Lock()
				statuses[st]++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok.Load() != dials || len(statuses) != 0 {
		t.Fatalf("%d of %d dials went through; failures by status %v (first: %v)", ok.Load(), dials, statuses, firstErr)
	}
	_, err = endpoints.DialTCP("tcp", "nobody", p.addr, "")
	var re *endpoints.RelayError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("dial to an unknown name after the load: %v, want 404", err)
	}
}
