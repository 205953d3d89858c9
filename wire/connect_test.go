package wire_test

import (
	"bytes"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

// FuzzAppendConnectEvent checks wire.AppendConnectEvent against
// wire.AppendJSONEvent: the same bytes for every event, escapes included.
func FuzzAppendConnectEvent(f *testing.F) {
	f.Add("2UJD1JX43xY_-TlwBYkUig", "client-1", "127.0.0.1:5555", wire.PathAccept+"2UJD1JX43xY_-TlwBYkUig", int64(1764800000000))
	f.Add("t", "", "[::1]:80", "/x", int64(-1))
	f.Add("<&>", "a\"b\\c", "\x00\x1f\u2028", "é\xff", int64(0))
	f.Fuzz(func(t *testing.T, token, client, addr, callback string, deadline int64) {
		ev := wire.ConnectEvent{Token: token, Client: client, ClientAddr: addr, Callback: callback, DeadlineUnixMilli: deadline}
		want, err := wire.AppendJSONEvent([]byte("prefix"), wire.EventConnect, ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.AppendConnectEvent([]byte("prefix"), ev); !bytes.Equal(got, want) {
			t.Fatalf("wire.AppendConnectEvent = %q, wire.AppendJSONEvent = %q", got, want)
		}
	})
}

// TestAppendConnectEventAllocs checks that a connect event of plain
// fields is written with no allocation.
func TestAppendConnectEventAllocs(t *testing.T) {
	skipAllocsUnderRace(t)
	ev := wire.ConnectEvent{Token: "2UJD1JX43xY_-TlwBYkUig", Client: "c1", ClientAddr: "127.0.0.1:5555", Callback: wire.PathAccept + "2UJD1JX43xY_-TlwBYkUig", DeadlineUnixMilli: 1764800000000}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = wire.AppendConnectEvent(buf[:0], ev) }); n != 0 {
		t.Fatalf("%v allocations per event, want 0", n)
	}
}
