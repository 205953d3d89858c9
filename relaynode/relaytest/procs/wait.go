package procs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// errExited is what a poll of a process's readiness gives when the process
// has ended.
var errExited = errors.New("exited")

// errBound is poll's error when its bound passed.
var errBound = errors.New("bound passed")

// poll calls try every 50 ms until it reports done or an error, within
// bound and ctx. It returns try's error, ctx's, or one naming bound.
func poll(ctx context.Context, bound time.Duration, try func() (bool, error)) error {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		done, err := try()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w (%v)", errBound, bound)
}

// httpClient is the client of the package's own requests: no keep-alive,
// so no idle connection outlives a test (goleak).
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches url within bound and ctx and returns its status and body,
// read up to 4 MiB.
func get(ctx context.Context, url string, bound time.Duration) (int, []byte, error) {
	return getWith(ctx, httpClient, url, bound)
}

// getWith is get through hc.
func getWith(ctx context.Context, hc *http.Client, url string, bound time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("get %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, body, fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}
