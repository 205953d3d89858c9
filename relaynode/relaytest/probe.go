package relaytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// ContextDialer dials a name through a relay; *endpoints.RelayDialer is
// one.
type ContextDialer interface {
	DialContext(ctx context.Context, network, name string) (net.Conn, error)
}

// Ping dials name through d, writes "ping", half-closes, and checks that
// exactly "ping" comes back before EOF, all within ctx. The server behind
// name must echo, as Echo does.
func Ping(ctx context.Context, d ContextDialer, name string) error {
	c, err := d.DialContext(ctx, "tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		return fmt.Errorf("relaytest: ping %s: write: %w", name, err)
	}
	if err := HalfClose(c); err != nil {
		return fmt.Errorf("relaytest: ping %s: %w", name, err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("relaytest: ping %s: read: %w", name, err)
	}
	if string(got) != "ping" {
		return fmt.Errorf("relaytest: ping %s: echo %q, want %q", name, got, "ping")
	}
	return nil
}

// Load is what EchoLoad counted.
type Load struct {
	// OK counts the dials whose byte came back.
	OK int64
	// Failures counts the others by refusal status (an
	// *endpoints.RelayError's), 0 for any other error.
	Failures map[int]int
	// First is the first failure's error.
	First error
}

// EchoLoad dials name through d dials times from loops concurrent loops,
// as a load test does: dial, write one byte, read it back (the conn
// bounded by 30s), close. It stops early when ctx ends. The server behind
// name must echo, as Echo does.
func EchoLoad(ctx context.Context, d ContextDialer, name string, loops, dials int) Load {
	var next, ok atomic.Int64
	var mu sync.Mutex
	l := Load{Failures: map[int]int{}}
	var wg sync.WaitGroup
	for range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1)
			for next.Add(1) <= int64(dials) && ctx.Err() == nil {
				err := func() error {
					c, err := d.DialContext(ctx, "tcp", name)
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
				l.Failures[st]++
				if l.First == nil {
					l.First = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	l.OK = ok.Load()
	return l
}

// PollPing pings name until a ping succeeds or bound passes, each attempt
// bounded by a second. It returns the attempts made and the last error.
func PollPing(d ContextDialer, name string, bound time.Duration) (int, error) {
	deadline := time.Now().Add(bound)
	for attempts := 1; ; attempts++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := Ping(ctx, d, name)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return attempts, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DialRetry dials name until a dial succeeds or bound passes, when it fails
// the test. Under load a listener may find its stream dead a moment after
// a successful dial, and dials on the registration it replaces are
// answered 502: a retry is what an application does.
func DialRetry(t testing.TB, d ContextDialer, name string, bound time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := d.DialContext(ctx, "tcp", name)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: no dial to %q succeeded within %v: %v", name, bound, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cycle is one round of a restart test.
type Cycle struct {
	// Started is when the round's relay was started.
	Started time.Time
	// Answered is when the first ping through it succeeded.
	Answered time.Time
	// Attempts is the pings it took.
	Attempts int
	// Echoed is the bytes the transfer echoed before the relay was stopped.
	Echoed int64
	// Cut is how the transfer ended: the Flow's error.
	Cut error
}

// FirstDial is the time from the relay's start to the first ping through it.
func (c Cycle) FirstDial() time.Duration { return c.Answered.Sub(c.Started) }

// Restarter runs the rounds of a restart test: a listener registered on a
// relay that is stopped mid-transfer and started again, round after round,
// must come back each time by itself.
type Restarter struct {
	// Dialer reaches Name through the relay.
	Dialer ContextDialer
	// Name is served by an echo server (as Echo) on a listener that
	// re-registers by itself.
	Name string
	// Bound is how long, at most, Name may take to answer after a start.
	Bound time.Duration
	// Start starts the relay again, on the same address.
	Start func()
	// Stop stops the running relay, or kills it.
	Stop func()
	// Budget, when not zero, ends the test early, with fewer rounds, once
	// it has passed since the first start: a loaded machine's allowance.
	Budget time.Duration
}

// Run runs up to n rounds. The first uses the relay running now, started
// at started; each next one calls Start first. Each round waits, at most
// Bound, for Name to answer a Ping; starts a Flow on a new dial and lets it
// echo 256 KiB; calls Stop; and waits for the Flow to end. It logs each
// round and returns them; a step that fails fails the test.
func (r Restarter) Run(t testing.TB, n int, started time.Time) []Cycle {
	t.Helper()
	var out []Cycle
	for i := range n {
		if i > 0 {
			if r.Budget > 0 && time.Since(out[0].Started) > r.Budget {
				t.Logf("relaytest: %v spent after %d rounds, over the budget %v: stopping there", time.Since(out[0].Started).Round(time.Second), i, r.Budget)
				break
			}
			started = time.Now()
			r.Start()
		}
		attempts, err := PollPing(r.Dialer, r.Name, r.Bound)
		if err != nil {
			t.Fatalf("relaytest: round %d: no successful ping of %q within %v of the start (%d attempts): %v", i, r.Name, r.Bound, attempts, err)
		}
		cy := Cycle{Started: started, Answered: time.Now(), Attempts: attempts}
		f := StartFlow(DialRetry(t, r.Dialer, r.Name, 10*time.Second))
		f.WaitEchoed(t, 256<<10, 10*time.Second)
		r.Stop() // mid-transfer
		cy.Cut = f.Wait(t, 10*time.Second)
		cy.Echoed = f.Echoed()
		t.Logf("round %2d: start→first dial %v (%d attempts); transfer cut after %d bytes echoed: %v",
			i, cy.FirstDial().Round(time.Millisecond), cy.Attempts, cy.Echoed, cy.Cut)
		out = append(out, cy)
	}
	return out
}
