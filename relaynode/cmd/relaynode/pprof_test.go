package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofHandler checks that -pprof adds the profiling routes beside
// the admin routes, which still answer, and that without it there are
// none.
func TestPprofHandler(t *testing.T) {
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	for _, tc := range []struct {
		h           http.Handler
		pprofStatus int
	}{
		{pprofHandler(admin), http.StatusOK},
		{admin, http.StatusNotFound},
	} {
		srv := httptest.NewServer(tc.h)
		get := func(path string) (int, string) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, string(b)
		}
		if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		code, body := get("/debug/pprof/cmdline")
		if code != tc.pprofStatus {
			t.Errorf("/debug/pprof/cmdline: %d, want %d", code, tc.pprofStatus)
		}
		if tc.pprofStatus == http.StatusOK {
			if !strings.Contains(body, "relaynode.test") {
				t.Errorf("/debug/pprof/cmdline: %q, want the test binary's command line", body)
			}
			if code, body := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
				t.Errorf("/debug/pprof/goroutine: %d %.80q", code, body)
			}
		}
		srv.Close()
	}
}

// TestPprofNeedsAdmin checks that -pprof without -admin-listen is refused
// before anything listens.
func TestPprofNeedsAdmin(t *testing.T) {
	var stderr bytes.Buffer
	err := run([]string{"-pprof", "-listen", "127.0.0.1:0"}, io.Discard, &stderr, nil)
	if !errors.Is(err, errPprofNoAdmin) {
		t.Fatalf("run -pprof without -admin-listen: %v, want %v", err, errPprofNoAdmin)
	}
}
