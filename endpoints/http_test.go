package endpoints_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTP serves HTTP over a relay listener and fetches through a relay
// dialer plugged into http.Transport: sequential requests, which reuse a
// kept-alive conn, and concurrent ones, which open several.
func TestHTTP(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testHTTP(t, tr) })
	}
}

func testHTTP(t *testing.T, tr transport) {
	_, ln, d := newPair(t, tr)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Over MTLS the request carries the client's verified certificate.
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			w.Header().Set("X-Client-CN", r.TLS.VerifiedChains[0][0].Subject.CommonName)
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: ioTimeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	transport := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 8,
	}
	client := &http.Client{Transport: transport, Timeout: ioTimeout}
	defer func() {
		// Shut down cleanly: the listener first, then Serve's return,
		// then the client's idle conns, then the server's open ones.
		ln.Close()
		select {
		case err := <-served:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve returned %v, want net.ErrClosed", err)
			}
		case <-time.After(ioTimeout):
			t.Errorf("Serve did not return within %v of Close", ioTimeout)
		}
		transport.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server Shutdown: %v", err)
		}
	}()

	get := func(i int) error {
		body := fmt.Sprintf("request %d", i)
		resp, err := client.Post(fmt.Sprintf("http://%s/echo/%d", serverName, i), "text/plain", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("request %d: status %d: %s", i, resp.StatusCode, got)
		}
		if want := fmt.Sprintf("POST /echo/%d %s", i, body); string(got) != want {
			return fmt.Errorf("request %d: body %q, want %q", i, got, want)
		}
		wantCN := ""
		if tr.mtls {
			wantCN = clientName
		}
		if cn := resp.Header.Get("X-Client-CN"); cn != wantCN {
			return fmt.Errorf("request %d: the server saw client certificate CN %q, want %q", i, cn, wantCN)
		}
		return nil
	}
	for i := range 20 {
		if err := get(i); err != nil {
			t.Fatalf("sequential: %v", err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- get(100 + i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent: %v", err)
		}
	}
}
