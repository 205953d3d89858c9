package benchmarks

import (
	"context"
	"encoding/binary"
	"io"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
)

// BenchmarkDial measures sequential dial, 1-byte echo and close, direct
// and through the relay, and reports p50 and p99.
func BenchmarkDial(b *testing.B) {
	b.Run("path=direct", func(b *testing.B) { sequentialDials(b, direct(b, false)) })
	b.Run("path=relay", func(b *testing.B) {
		dial, _ := relayed(b, relaynode.Config{}, false)
		sequentialDials(b, dial)
	})
	b.Run("path=relay/early", func(b *testing.B) {
		dial, _ := relayed(b, relaynode.Config{}, false, endpoints.WithEarlyData())
		sequentialDials(b, dial)
	})
}

// BenchmarkDialMTLS is BenchmarkDial with TLS end to end: each round trip
// is the dial, the handshake with the server through the relay, a 1-byte
// echo and close. With WithEarlyData the ClientHello goes out behind the
// dial request instead of after the relay's answer.
func BenchmarkDialMTLS(b *testing.B) {
	for _, early := range []bool{false, true} {
		name, opts := "early=off", []endpoints.Option(nil)
		if early {
			name, opts = "early=on", []endpoints.Option{endpoints.WithEarlyData()}
		}
		b.Run(name, func(b *testing.B) { sequentialDials(b, relayedMTLS(b, opts...)) })
	}
}

// sequentialDials makes b.N round trips through dial, one after another,
// and reports their allocations, p50 and p99.
func sequentialDials(b *testing.B, dial dialFunc) {
	b.ReportAllocs()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if err := roundTrip(ctx, dial); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// BenchmarkDialRate measures 32 concurrent loops of dial, echo and close,
// direct and through the relay with each mailbox kind on every actor kind.
func BenchmarkDialRate(b *testing.B) {
	const loops = 32
	run := func(b *testing.B, dial dialFunc) {
		b.ReportAllocs()
		ctx := context.Background()
		var failed atomic.Int64
		b.SetParallelism((loops + 1) / 2) // GOMAXPROCS=2 here: 32 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := roundTrip(ctx, dial); err != nil {
					failed.Add(1)
				}
			}
		})
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d dials failed", n)
		}
	}
	b.Run("path=direct", func(b *testing.B) { run(b, direct(b, false)) })
	all := func(mb actors.Mailbox) actors.Mailboxes {
		return actors.Mailboxes{Directory: mb, Listener: mb, Pending: mb, Pair: mb}
	}
	bounded := func(size int, kind func(*actors.Mailboxes) *actors.Mailbox) actors.Mailboxes {
		m := actors.DefaultMailboxes()
		mb := actors.Mailbox{Kind: actors.MailboxBounded, Size: size}
		*kind(&m), m.Pair = mb, mb
		return m
	}
	for _, c := range []struct {
		name string
		mbs  actors.Mailboxes
	}{
		{"defaults", actors.DefaultMailboxes()},
		{"all=unbounded", all(actors.Mailbox{Kind: actors.MailboxUnbounded})},
		{"all=unbounded-lockfree", all(actors.Mailbox{Kind: actors.MailboxUnboundedLockfree})},
		// At most one of the directory, listener and pending mailboxes may
		// be bounded; the pair's with them.
		{"directory,pair=bounded:1024", bounded(1024, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Directory })},
		{"pending,pair=bounded:64", bounded(64, func(m *actors.Mailboxes) *actors.Mailbox { return &m.Pending })},
	} {
		b.Run("path=relay/mailbox="+c.name, func(b *testing.B) {
			dial, _ := relayed(b, relaynode.Config{Mailboxes: c.mbs}, false)
			run(b, dial)
		})
	}
}

// BenchmarkBulk measures one stream sending size bytes and reading an
// 8-byte count back, direct and through the relay (splice path).
func BenchmarkBulk(b *testing.B) {
	const size = 64 << 20
	chunk := make([]byte, 256<<10)
	run := func(b *testing.B, dial dialFunc) {
		b.SetBytes(size)
		ctx := context.Background()
		for b.Loop() {
			c, err := dial(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			var cnt [8]byte
			if _, err := io.ReadFull(c, cnt[:]); err != nil {
				b.Fatal(err)
			}
			if n := binary.LittleEndian.Uint64(cnt[:]); n != size {
				b.Fatalf("sink counted %d, sent %d", n, size)
			}
			c.Close()
		}
	}
	b.Run("path=direct", func(b *testing.B) { run(b, direct(b, true)) })
	b.Run("path=relay", func(b *testing.B) {
		dial, _ := relayed(b, relaynode.Config{}, true)
		run(b, dial)
	})
}

// BenchmarkMetricsCost measures the dial rate with /metrics scraped every
// 100ms against the same relay unscraped. The node's own counters are
// always on (a few atomic adds per request); the Prometheus collector reads
// them only at scrape time, so the scrape is what there is to measure.
func BenchmarkMetricsCost(b *testing.B) {
	for _, scraped := range []bool{false, true} {
		name := "metrics=off"
		if scraped {
			name = "metrics=scraped-100ms"
		}
		b.Run(name, func(b *testing.B) {
			dial, r := relayed(b, relaynode.Config{}, false)
			admin := r.Node.AdminHandler()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if !scraped {
					return
				}
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						rec := httptest.NewRecorder()
						admin.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
						if rec.Code != 200 {
							b.Errorf("scrape: %d", rec.Code)
						}
					}
				}
			}()
			ctx := context.Background()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := roundTrip(ctx, dial); err != nil {
						b.Error(err)
						return
					}
				}
			})
			close(stop)
			<-done
		})
	}
}
