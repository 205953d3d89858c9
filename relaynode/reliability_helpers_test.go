package relaynode_test

import (
	"crypto/sha256"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// Reliability checks of the design's matrix: C1 relay
// restarts, C2 graceful shutdown, C4 faults mid-transfer, D7 a blackholed
// registration stream, and the opt-in H4 soak. Each reports its figures with
// t.Logf; run with -v to see them.

// stater is what a relay listener exposes of its registration.
type stater interface {
	State() endpoints.ListenerState
}

// leakCheck fails the test if a goroutine started during it is still alive
// once its other cleanups have run. Call it first.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// chachaBytes returns n bytes of ChaCha8 output for seed.
func chachaBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// freeLoopbackAddr returns a loopback address that was free a moment ago.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// medianMax returns the median and the maximum of the rounds' times from
// start to first dial.
func medianMax(cs []relaytest.Cycle) (median, maximum time.Duration) {
	s := make([]time.Duration, 0, len(cs))
	for _, c := range cs {
		s = append(s, c.FirstDial())
	}
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// transferEnd is how one end of a transfer ended.
type transferEnd struct {
	kind byte // 'F' finishing, 'E' endless
	n    int64
	sum  [sha256.Size]byte
	err  error
	at   time.Time
}
