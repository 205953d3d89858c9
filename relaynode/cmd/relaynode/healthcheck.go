package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// healthcheckTimeout bounds one -healthcheck probe, connection to body.
const healthcheckTimeout = 3 * time.Second

// healthcheck GETs url and reports nil on a 200, printing the body's first
// line to stdout; any other status, or no answer within
// healthcheckTimeout, is an error naming the URL. It is the binary's
// -healthcheck mode, for images without curl.
func healthcheck(url string, stdout io.Writer) error {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("-healthcheck %q: not an http:// or https:// URL", url)
	}
	c := &http.Client{Timeout: healthcheckTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("-healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return fmt.Errorf("-healthcheck %s: read body: %w", url, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("-healthcheck %s: status %d %q", url, resp.StatusCode, line)
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, line)
	return nil
}
