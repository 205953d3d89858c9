package endpoints_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
	"github.com/clusterlink-relay/relay/wire"
)

// TestRelay101Bytes checks that the relay's two 101 heads are, byte for
// byte, wire.AppendUpgradeResponse's, with nothing of the relay's own
// behind them, for requests built by wire.AppendUpgradeRequest.
func TestRelay101Bytes(t *testing.T) {
	const node = "relay-bytes"
	r := relaytest.Start(t, relaynode.Config{NodeID: node})
	srv := rawListen(t, r.Addr, "bytes")

	dial, err := net.DialTimeout("tcp", r.Addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer dial.Close()
	_ = dial.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := dial.Write(wire.AppendUpgradeRequest(nil, r.Addr, wire.PathDial+"bytes", wire.HeaderClientName, "demo-client")); err != nil {
		t.Fatal(err)
	}
	ce := srv.nextConnect(t)

	acc, err := net.DialTimeout("tcp", r.Addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	_ = acc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := acc.Write(append(wire.AppendUpgradeRequest(nil, r.Addr, ce.Callback, wire.HeaderRegistration, srv.regID), "s2c"...)); err != nil {
		t.Fatal(err)
	}
	wantServer := wire.AppendUpgradeResponse(nil, node, wire.HeaderClientName, "demo-client", wire.HeaderClientAddr, ce.ClientAddr)
	wantClient := wire.AppendUpgradeResponse(nil, node)
	for _, side := range []struct {
		name string
		c    net.Conn
		want []byte
	}{{"server", acc, wantServer}, {"client", dial, append(wantClient, "s2c"...)}} {
		got := make([]byte, len(side.want))
		if _, err := io.ReadFull(side.c, got); err != nil || string(got) != string(side.want) {
			t.Errorf("%s side read %q, %v\nwant %q", side.name, got, err, side.want)
		}
	}
}
