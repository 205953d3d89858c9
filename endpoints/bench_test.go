package endpoints_test

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// BenchmarkTransports measures each transport on loopback, relay and both
// endpoints in this process:
//
//   - dial-echo: one sequential dial (with its TLS handshakes), a 1-byte
//     echo and a close per op; p50 and p99 of the op in µs;
//   - bulk/size=32MiB: one dial and 32 MiB one way per op, the client
//     half-closing and waiting for the server's close; MB/s.
//
// Run the two apart, with fixed counts:
//
//	go test -run '^$' -bench 'Transports/.*/dial-echo' -benchtime 300x ./endpoints/
//	go test -run '^$' -bench 'Transports/.*/bulk' -benchtime 5x ./endpoints/
func BenchmarkTransports(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			b.Run("dial-echo", func(b *testing.B) { benchDialEcho(b, tr) })
			b.Run("bulk/size=32MiB", func(b *testing.B) { benchBulk(b, tr, 32<<20) })
		})
	}
}

func benchDialEcho(b *testing.B, tr transport) {
	_, ln, d := newPair(b, tr)
	serveEcho(b, ln)
	lat := make([]time.Duration, 0, b.N)
	var one [1]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		c, err := d.Dial("tcp", serverName)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		one[0] = byte(i)
		if _, err := c.Write(one[:]); err != nil {
			b.Fatalf("write %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, one[:]); err != nil || one[0] != byte(i) {
			b.Fatalf("echo %d: %v %v", i, one[0], err)
		}
		c.Close()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

func benchBulk(b *testing.B, tr transport, size int) {
	_, ln, d := newPair(b, tr)
	// The server reads to EOF and closes: the client's read of EOF marks
	// the end of the transfer.
	serve(b, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		_, _ = io.CopyBuffer(io.Discard, readerOnly{c}, make([]byte, 64<<10))
	})
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c, err := d.Dial("tcp", serverName)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		for left := size; left > 0; left -= len(buf) {
			if _, err := c.Write(buf[:min(left, len(buf))]); err != nil {
				b.Fatalf("write %d: %v", i, err)
			}
		}
		if err := c.(closeWriter).CloseWrite(); err != nil {
			b.Fatalf("CloseWrite %d: %v", i, err)
		}
		if n, err := c.Read(buf[:1]); n != 0 || err != io.EOF {
			b.Fatalf("after the transfer %d: read %d, %v; want EOF", i, n, err)
		}
		c.Close()
	}
}
