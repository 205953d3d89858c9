package actors

import (
	"context"
	"fmt"
	"testing"
)

// benchEngine returns an engine with the default config and others
// registrations of other names live.
func benchEngine(b *testing.B, others int) *Engine {
	b.Helper()
	e := newEngine(b, Config{})
	ctx := context.Background()
	for i := range others {
		if _, err := e.Register(ctx, RegisterRequest{Name: fmt.Sprintf("other-%d", i), ClientAddr: "127.0.0.1:1"}); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// isStatus reports whether err is a *Refusal with the given status.
func isStatus(err error, status int) bool {
	rf, ok := err.(*Refusal)
	return ok && rf.Status == status
}

// BenchmarkDirectoryLookup measures one dial's trip through the directory:
// to an unknown name, answered 404 by the directory alone; and to a
// registered name, through its listener to a new pending actor and back,
// then cancelled. Each runs with other names registered, to show whether
// routing is flat in their number.
//
// The connect event is taken off the queue in the loop rather than by a
// draining goroutine: the listener queues it before it replies, so it is
// there when Dial returns. A draining goroutine on 2 or more Ps was seen
// to stay unscheduled for over 4 ms while the dial loop filled the queue
// (64 events), failing dials with 503 "listener queue full".
func BenchmarkDirectoryLookup(b *testing.B) {
	ctx := context.Background()
	for _, others := range []int{0, 1000} {
		b.Run(fmt.Sprintf("dial=unknown/names=%d", others), func(b *testing.B) {
			e := benchEngine(b, others)
			b.ReportAllocs()
			for b.Loop() {
				// A type assertion, not errors.As, which would allocate.
				if _, err := e.Dial(ctx, "nobody", "cli", "127.0.0.1:2"); !isStatus(err, 404) {
					b.Fatalf("dial to an unknown name: %v, want a 404 refusal", err)
				}
			}
		})
		b.Run(fmt.Sprintf("dial+cancel/names=%d", others), func(b *testing.B) {
			e := benchEngine(b, others)
			reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "127.0.0.1:1"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				pd, err := e.Dial(ctx, "svc", "cli", "127.0.0.1:2")
				if err != nil {
					b.Fatal(err)
				}
				select {
				case <-reg.Events():
				default:
					b.Fatal("Dial returned before its connect event was queued")
				}
				pd.Cancel()
			}
		})
	}
}

// BenchmarkRegister measures a registration and its end: the directory
// spawns a listener and replies, then unregisters it. The same name is
// reused: the unregister and the next register travel the directory's one
// mailbox from the same goroutine, so they are handled in that order.
func BenchmarkRegister(b *testing.B) {
	ctx := context.Background()
	for _, others := range []int{0, 1000} {
		b.Run(fmt.Sprintf("names=%d", others), func(b *testing.B) {
			e := benchEngine(b, others)
			b.ReportAllocs()
			for b.Loop() {
				reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "127.0.0.1:1"})
				if err != nil {
					b.Fatal(err)
				}
				reg.Close()
			}
		})
	}
}
