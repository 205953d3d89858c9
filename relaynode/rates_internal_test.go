package relaynode

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// TestStatusTwoScrapers checks that reading Status changes nothing: two
// scrapers, back to back, see the same rates, the bytes between the node's
// last two samples over the time between them.
func TestStatusTwoScrapers(t *testing.T) {
	n, err := New(Config{DialRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	n.stopSampling() // the test takes the samples itself
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ln) }()
	defer func() {
		n.Close()
		<-served
	}()
	rl, err := endpoints.ListenRelay("tcp", "svc", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	t0 := time.Now()
	n.sampleRates(t0)
	const size = 3000
	c, err := endpoints.DialTCP("tcp", "svc", ln.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := n.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Names) == 1 && st.Names[0].BytesToServer == size && st.Names[0].BytesToClient == size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bytes not counted: %+v", st.Names)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.sampleRates(t0.Add(2 * time.Second))

	a, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range []Status{a, b} {
		if len(st.Names) != 1 {
			t.Fatalf("scraper %d: names %+v", i, st.Names)
		}
		ns := st.Names[0]
		if ns.RateToServer != size/2 || ns.RateToClient != size/2 {
			t.Errorf("scraper %d: rates %v / %v B/s, want %d each", i, ns.RateToServer, ns.RateToClient, size/2)
		}
	}
}
