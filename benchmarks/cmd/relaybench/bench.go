package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// bench is one run of the command: its options, the services every mode
// shares, and the results so far. The services are started by newBench
// and stopped by close.
type bench struct {
	opt     options
	sz      sizes
	stdout  io.Writer
	prog    *progress
	log     *countingHandler // the in-process relays' logs
	res     *results
	rows    []row    // the table, in mode order
	id      string   // random suffix of the names the bench registers
	written []string // files written by writeOut

	// Baselines: loopback TCP servers and a bare splice proxy to each.
	echo, sink           *server
	proxyEcho, proxySink *server

	// The relay under test, and the servers registered on it.
	relay                          *relayHandle
	relayEcho, relayWarm, relaySnk *server
	dialer                         *endpoints.RelayDialer
}

// dialFunc opens one connection to a service under test.
type dialFunc func(ctx context.Context) (net.Conn, error)

// target is one path to a service under test.
type target struct {
	name string // "direct", "proxy", "relay", "relay warm"
	dial dialFunc
}

// Names of the targets, as the table, the JSON and the plots show them.
const (
	targetDirect    = "direct"
	targetProxy     = "proxy"
	targetRelay     = "relay"
	targetRelayCold = "relay cold"
	targetRelayWarm = "relay warm"
)

// dialTimeout bounds every dial of the bench, so that no loop waits
// forever on a stuck relay.
const dialTimeout = 10 * time.Second

// ioTimeout bounds each exchange on an established connection.
const ioTimeout = 10 * time.Second

// newBench starts the baselines and the relay (or connects to -relay) and
// registers the bench's echo and sink servers on it.
func newBench(ctx context.Context, o options, stdout, stderr io.Writer) (_ *bench, err error) {
	b := &bench{
		opt:    o,
		sz:     o.sizes(),
		stdout: stdout,
		prog:   newProgress(stderr),
		log:    newCountingHandler(),
		id:     randomID(),
	}
	note := raiseFDLimit()
	b.res = newResults(o, b.sz)
	if note != "" {
		b.res.Notes = append(b.res.Notes, note)
	}
	defer func() {
		if err != nil {
			b.close(ctx)
		}
	}()
	b.prog.step("starting baselines")
	if b.echo, err = listenTCP(echoConn); err != nil {
		return nil, fmt.Errorf("start echo server: %w", err)
	}
	if b.sink, err = listenTCP(sinkConn); err != nil {
		return nil, fmt.Errorf("start sink server: %w", err)
	}
	if b.proxyEcho, err = listenTCP(spliceTo(b.echo.addr())); err != nil {
		return nil, fmt.Errorf("start echo proxy: %w", err)
	}
	if b.proxySink, err = listenTCP(spliceTo(b.sink.addr())); err != nil {
		return nil, fmt.Errorf("start sink proxy: %w", err)
	}
	if o.relay != "" {
		b.prog.step("connecting to relay %s", o.relay)
		b.relay = remoteRelay(o.relay, o.admin)
		b.res.Relay = o.relay
	} else {
		b.prog.step("starting in-process relay")
		if b.relay, err = startRelay(benchConfig(b.log)); err != nil {
			return nil, err
		}
		b.res.Relay = "in-process " + b.relay.addr
	}
	b.dialer = newDialer(b.relay.addr, o.dialOptions()...)
	if b.relayEcho, err = listenRelay(ctx, b.relay.addr, b.name("echo"), echoConn); err != nil {
		return nil, err
	}
	if b.relayWarm, err = listenRelay(ctx, b.relay.addr, b.name("echo-warm"), echoConn, endpoints.WithWarmPool(o.warm)); err != nil {
		return nil, err
	}
	if b.relaySnk, err = listenRelay(ctx, b.relay.addr, b.name("sink"), sinkConn); err != nil {
		return nil, err
	}
	return b, nil
}

// name returns the name the bench registers for what, unique to this run
// so that runs against one relay do not collide.
func (b *bench) name(what string) string { return "relaybench-" + b.id + "-" + what }

// randomID returns 8 random hex digits.
func randomID() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// directEcho is the echo server over loopback TCP.
func (b *bench) directEcho() target { return target{targetDirect, tcpDialer(b.echo.addr())} }

// proxiedEcho is the echo server through the bare splice proxy.
func (b *bench) proxiedEcho() target {
	return target{targetProxy, tcpDialer(b.proxyEcho.addr())}
}

// relayedEcho is the echo server through the relay, with no warm pool,
// shown as name.
func (b *bench) relayedEcho(name string) target {
	return target{name, relayDialer(b.dialer, b.name("echo"))}
}

// warmEcho is the echo server registered with a warm pool of -warm parked
// callbacks, through the relay.
func (b *bench) warmEcho() target {
	return target{targetRelayWarm, relayDialer(b.dialer, b.name("echo-warm"))}
}

// tcpDialer dials addr over loopback TCP.
func tcpDialer(addr string) dialFunc {
	d := &net.Dialer{Timeout: dialTimeout}
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// relayDialer dials name through the relay of d.
func relayDialer(d *endpoints.RelayDialer, name string) dialFunc {
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", name) }
}

// newDialer returns the bench's dialer through the relay at addr, with
// opts after its dial timeout.
func newDialer(addr string, opts ...endpoints.Option) *endpoints.RelayDialer {
	return endpoints.NewRelayDialer(addr, "relaybench", append([]endpoints.Option{endpoints.WithDialTimeout(dialTimeout)}, opts...)...)
}

// runModes runs each selected mode in order. A failed mode is recorded
// and the next one runs; a cancelled context stops the run.
func (b *bench) runModes(ctx context.Context) error {
	var errs []error
	for _, m := range b.opt.modes {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("interrupted before %s: %w", m, ctx.Err()))
			break
		}
		start := time.Now()
		var err error
		switch m {
		case "latency":
			err = b.runLatency(ctx)
		case "rate":
			err = b.runRate(ctx)
		case "bulk":
			err = b.runBulk(ctx)
		case "idle":
			err = b.runIdle(ctx)
		case "listeners":
			err = b.runListeners(ctx)
		case "mailbox":
			err = b.runMailbox(ctx, mailboxSweep())
		case "stalled":
			err = b.runStalled(ctx)
		}
		b.res.ModeSeconds[m] = time.Since(start).Seconds()
		if err != nil {
			err = fmt.Errorf("%s: %w", m, err)
			b.res.Errors = append(b.res.Errors, err.Error())
			b.rows = append(b.rows, row{mode: m, target: "—", figures: "FAILED: " + err.Error(), status: statusFailed})
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close stops the relay servers, the relay and the baselines, and records
// the relay's own counters. It is safe to call twice.
func (b *bench) close(ctx context.Context) {
	b.closeServers(&b.relayEcho, &b.relayWarm, &b.relaySnk)
	if b.relay != nil {
		b.noteRelay(ctx, "main", b.relay)
		b.relay.close()
		b.relay = nil
	}
	b.closeServers(&b.proxyEcho, &b.proxySink, &b.echo, &b.sink)
	if n, first := b.log.count(); n > 0 {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("in-process relays logged %d warnings or errors; first: %s", n, first))
	}
}

// closeServers closes each server of ss that is running and sets it to
// nil, first noting in the results why it stopped accepting, if it did
// before close.
func (b *bench) closeServers(ss ...**server) {
	for _, s := range ss {
		if *s == nil {
			continue
		}
		if err := (*s).err(); err != nil {
			b.res.Notes = append(b.res.Notes, fmt.Sprintf("server %s stopped accepting during the run: %v", (*s).addr(), err))
		}
		(*s).close()
		*s = nil
	}
}

// noteRelay records a relay's dial and refusal counters in the results.
func (b *bench) noteRelay(ctx context.Context, which string, r *relayHandle) {
	// The counters are wanted even when the run was interrupted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rc, err := r.counters(ctx)
	if err != nil {
		rc = relayCounters{Error: err.Error()}
	}
	rc.Relay = which
	b.res.RelayCounters = append(b.res.RelayCounters, rc)
}
