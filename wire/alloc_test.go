package wire_test

import (
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

// skipAllocsUnderRace skips a test that asserts allocation counts when the
// race detector is on.
func skipAllocsUnderRace(t *testing.T) {
	t.Helper()
	if raceOn {
		t.Skip("allocation counts are not asserted under -race")
	}
}

// TestNewTokenAllocs checks that minting a token, once per dial, does not
// allocate: the token is an array value and crypto/rand reads into it in
// place. TestTokenAllocs covers parsing and encoding.
func TestNewTokenAllocs(t *testing.T) {
	skipAllocsUnderRace(t)
	var tok wire.Token
	if n := testing.AllocsPerRun(100, func() {
		tok = wire.NewToken()
	}); n != 0 {
		t.Errorf("NewToken: %v allocs per run, want 0", n)
	}
	if tok.IsZero() {
		t.Error("NewToken minted the zero token")
	}
}

// TestAppendCommentAllocs checks that a heartbeat into a buffer with room
// does not allocate.
func TestAppendCommentAllocs(t *testing.T) {
	skipAllocsUnderRace(t)
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		buf = wire.AppendComment(buf[:0], "hb")
	}); n != 0 {
		t.Errorf("AppendComment with capacity: %v allocs per run, want 0", n)
	}
}
