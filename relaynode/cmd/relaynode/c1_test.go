package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestBinaryKilled is C1 with the real binary: the relay process is killed
// with SIGKILL mid-stream and started again on the same port, 20 times (8
// under -short). The listener must come back each time by itself, and
// Accept must never fail.
func TestBinaryKilled(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 8
	}
	bin := build(t)
	begin := time.Now()
	addr := freeAddr(t)

	var cmd *exec.Cmd // the running relay
	var logs *syncBuffer
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait() // "signal: killed"
		cmd = nil
	}
	t.Cleanup(func() {
		if cmd != nil {
			kill()
		}
	})
	start := func() {
		t.Helper()
		logs = &syncBuffer{}
		cmd = exec.Command(bin, "-listen", addr, "-heartbeat", "100ms", "-log-level", "warn")
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}

	t0 := time.Now()
	start()
	var ln net.Listener
	for {
		var err error
		ln, err = endpoints.ListenRelay("tcp", "c1bin", "http://"+addr,
			endpoints.WithBackoff(20*time.Millisecond, 300*time.Millisecond),
			endpoints.WithHandshakeTimeout(time.Second))
		if err == nil {
			break
		}
		if time.Since(t0) > 15*time.Second {
			t.Fatalf("no registration 15s after the first start: %v; logs:\n%s", err, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var acceptErrs []error // written by the accept loop, read after it ended
	var handlers sync.WaitGroup
	loopDone := make(chan struct{})
	closing := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				select {
				case <-closing:
					if errors.Is(err, net.ErrClosed) {
						return
					}
				default:
				}
				acceptErrs = append(acceptErrs, err)
				return
			}
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if _, err := io.Copy(c, c); err == nil {
					_ = c.(*endpoints.Conn).CloseWrite()
				}
			}()
		}
	}()
	stopLoop := func() {
		close(closing)
		ln.Close()
		<-loopDone
		handlers.Wait()
	}
	defer func() {
		if closing != nil {
			stopLoop()
		}
	}()

	d := endpoints.NewRelayDialer(addr, "c1bin-client")
	var took []time.Duration
	for i := range cycles {
		if i > 0 {
			t0 = time.Now()
			start()
		}
		attempts, err := pollEcho(d, "c1bin", 15*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: no successful dial within 15s of the process start (%d attempts): %v; logs:\n%s", i, attempts, err, logs)
		}
		took = append(took, time.Since(t0))

		// A transfer mid-stream when the process dies.
		// Under load the listener may re-register a moment after the
		// first dial, and a dial on the registration it replaces gets 502:
		// retry as an application would.
		var c net.Conn
		for retry := time.Now().Add(10 * time.Second); ; {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err = d.DialContext(ctx, "tcp", "c1bin")
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(retry) {
				t.Fatalf("cycle %d: dial for the transfer: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		f := relaytest.StartFlow(c)
		f.WaitEchoed(t, 256<<10, 10*time.Second)
		kill()
		cut := f.Wait(t, 10*time.Second)
		t.Logf("cycle %2d: process start→first dial %v (%d attempts); transfer cut after %d bytes echoed: %v",
			i, took[i].Round(time.Millisecond), attempts, f.Echoed(), cut)
		if time.Since(begin) > 80*time.Second {
			t.Fatalf("cycle %d: %v spent, over the 80s budget", i, time.Since(begin))
		}
	}
	stopLoop()
	closing = nil
	if len(acceptErrs) > 0 {
		t.Errorf("Accept returned errors across kills: %v", acceptErrs)
	}
	st := ln.(interface {
		State() endpoints.ListenerState
	}).State()
	if st.Reconnects < cycles-1 {
		t.Errorf("State().Reconnects = %d, want >= %d", st.Reconnects, cycles-1)
	}
	s := slices.Clone(took)
	slices.Sort(s)
	t.Logf("C1 binary: %d SIGKILL cycles, process start→first successful dial median %v max %v; listener reconnects %d",
		cycles, s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), st.Reconnects)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pollEcho dials name and echoes a few bytes until that succeeds or bound
// passes, each attempt bounded by a second. It returns the attempts made
// and the last error.
func pollEcho(d *endpoints.RelayDialer, name string, bound time.Duration) (int, error) {
	deadline := time.Now().Add(bound)
	for attempts := 1; ; attempts++ {
		err := echoOnce(d, name)
		if err == nil || time.Now().After(deadline) {
			return attempts, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func echoOnce(d *endpoints.RelayDialer, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", name)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	if err := c.(*endpoints.Conn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != "ping" {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}
