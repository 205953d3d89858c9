package relaynode_test

import (
	"net"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// TestRelayRestart is C1 in process: a relay on a fixed port is closed
// mid-stream and started again 20 times. The listener must come back each
// time by itself, and Accept must never fail.
func TestRelayRestart(t *testing.T) {
	leakCheck(t)
	const rounds = 20
	addr := freeLoopbackAddr(t)
	var relay *relaytest.Relay // the running one
	startRelay := func() {
		t.Helper()
		var ln net.Listener
		relaytest.Eventually(t, 5*time.Second, func() bool {
			var err error
			ln, err = net.Listen("tcp", addr)
			return err == nil
		}, "cannot listen on "+addr+" again")
		relay = relaytest.StartOn(t, relaynode.Config{Heartbeat: 100 * time.Millisecond}, ln)
	}

	t0 := time.Now()
	startRelay()
	ln, err := endpoints.ListenRelay("tcp", "c1", "http://"+addr, endpoints.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	loop := relaytest.Serve(t, ln, relaytest.Echo)
	d := endpoints.NewRelayDialer(addr, "c1-client")
	cycles := relaytest.Restarter{Dialer: d, Name: "c1", Bound: 10 * time.Second,
		Start: startRelay, Stop: func() { relay.Close() }}.Run(t, rounds, t0)
	if errs := loop.AcceptErrs(); len(errs) > 0 {
		t.Errorf("Accept returned errors across restarts: %v", errs)
	}
	st := ln.(stater).State()
	if st.Reconnects < rounds-1 {
		t.Errorf("State().Reconnects = %d, want >= %d", st.Reconnects, rounds-1)
	}
	med, mx := medianMax(cycles)
	t.Logf("C1 in-process: %d cycles, restart→first successful dial median %v max %v; listener reconnects %d, callbacks failed %d",
		rounds, med.Round(time.Millisecond), mx.Round(time.Millisecond), st.Reconnects, ln.(interface{ Failed() int64 }).Failed())
}
