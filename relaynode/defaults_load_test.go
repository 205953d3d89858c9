package relaynode_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
)

// TestZeroConfigLoad serves relaynode.New(relaynode.Config{}) (no limit
// changed, unlike relaytest.Start) and dials it 1,024 times from 64
// concurrent loops on one host: dial, 1-byte echo, close. Every dial must
// go through.
func TestZeroConfigLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a few thousand dials")
	}
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()
	defer func() {
		node.Close()
		<-served
	}()
	addr := ln.Addr().String()
	serveEchoOn(t, addr, "load")

	const loops, dials = 64, 1024
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // against hangs only
	defer cancel()
	d := endpoints.NewRelayDialer(addr, "", endpoints.WithDialTimeout(30*time.Second))
	var next, ok atomic.Int64
	var mu sync.Mutex
	statuses := map[int]int{}
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
	st, err := node.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Refusals) != 0 || st.Dials["spliced"] != dials {
		t.Fatalf("relay counted refusals %+v and %d spliced, want none and %d", st.Refusals, st.Dials["spliced"], dials)
	}
}
