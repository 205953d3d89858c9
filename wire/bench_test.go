package wire_test

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

// BenchmarkEventEncode encodes the relay's events into a reused buffer: a
// connect event per dial, a ready event per registration, a heartbeat
// comment per interval.
func BenchmarkEventEncode(b *testing.B) {
	// The events are passed by value, as the relay's stream handler does,
	// so the conversion to any is part of what is measured.
	connect, ready := testConnect(b, 0), testReady(b)
	b.Run("connect", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = wire.AppendJSONEvent(buf[:0], wire.EventConnect, connect); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("ready", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = wire.AppendJSONEvent(buf[:0], wire.EventReady, ready); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("comment", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			buf = wire.AppendComment(buf[:0], "hb")
		}
		b.SetBytes(int64(len(buf)))
	})
}

// repeatReader yields its bytes over and over, so that one Reader can be
// benchmarked per event with no reset in the loop.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// BenchmarkEventParse reads connect events one at a time, as an endpoint's
// SSE loop does, and then decodes them.
func BenchmarkEventParse(b *testing.B) {
	const n = 64
	stream, _ := connectStream(b, n)
	perEvent := int64(len(stream) / n)
	b.Run("next", func(b *testing.B) {
		r := wire.NewReader(&repeatReader{b: stream}, 0, 0)
		b.ReportAllocs()
		b.SetBytes(perEvent)
		for b.Loop() {
			if _, err := r.Next(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("next+parse", func(b *testing.B) {
		r := wire.NewReader(&repeatReader{b: stream}, 0, 0)
		b.ReportAllocs()
		b.SetBytes(perEvent)
		for b.Loop() {
			ev, err := r.Next()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := wire.ParseConnect(ev.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("stream/events=%d", n), func(b *testing.B) {
		src := bytes.NewReader(stream)
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			src.Reset(stream)
			r := wire.NewReader(src, 0, 0)
			for {
				ev, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := wire.ParseConnect(ev.Data); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// sinkString keeps a benchmark's string on the heap, as its real callers
// keep it (the listener stores a token's text in the connect event).
var sinkString string

// BenchmarkTokenMint mints a connect token, as the directory does per dial,
// and encodes it, as the listener does for the connect event.
func BenchmarkTokenMint(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			wire.NewToken()
		}
	})
	b.Run("new+string", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString = wire.NewToken().String()
		}
	})
	b.Run("new+append", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = wire.NewToken().AppendText(buf[:0])
		}
	})
}

// BenchmarkTokenCheck parses a callback's token, valid or hostile, and
// compares a registration id in constant time as the actors do.
func BenchmarkTokenCheck(b *testing.B) {
	good := validToken(b)
	for _, bc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"parse=valid", good, true},
		{"parse=short", good[:wire.TokenLen-1], false},
		{"parse=alphabet", "!" + good[1:], false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.ParseToken(bc.in); (err == nil) != bc.ok {
					b.Fatalf("ParseToken(%q) = %v, want ok %v", bc.in, err, bc.ok)
				}
			}
		})
	}
	b.Run("compare", func(b *testing.B) {
		x := wire.NewToken()
		y := x
		b.ReportAllocs()
		for b.Loop() {
			if subtle.ConstantTimeCompare(x[:], y[:]) != 1 {
				b.Fatal("equal tokens compare unequal")
			}
		}
	})
}
