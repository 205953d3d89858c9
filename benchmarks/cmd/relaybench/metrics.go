package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// maxMetricsBody bounds the /metrics body read.
const maxMetricsBody = 16 << 20

// scrape reads the Prometheus text exposition at url.
func scrape(ctx context.Context, url string) ([]sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	// A client of its own, without keep-alives: nothing is left idle when
	// the run ends.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	ms, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return ms, nil
}

// parseMetrics parses the Prometheus text format: one sample a line,
// "name{label="value",...} value [timestamp]", with # lines for help and
// type. Lines it cannot read are skipped.
func parseMetrics(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, ok := parseSample(line)
		if ok {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

// parseSample parses one sample line.
func parseSample(line string) (sample, bool) {
	s := sample{labels: map[string]string{}}
	rest := line
	i := strings.IndexAny(rest, "{ ")
	if i < 0 {
		return sample{}, false
	}
	s.name, rest = rest[:i], rest[i:]
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return sample{}, false
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for i := 0; i < len(rest); i++ {
				c := rest[i]
				if c == '\\' && i+1 < len(rest) {
					i++
					switch rest[i] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[i])
					}
					continue
				}
				if c == '"' {
					rest = rest[i+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return sample{}, false
			}
			s.labels[key] = val.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return sample{}, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return sample{}, false
	}
	s.value = v
	return s, true
}

// processFigures are what the idle and listeners modes read of a running
// relay's process: heap, goroutine stacks and open fds. Each is -1 when the
// relay does not export it.
type processFigures struct {
	heap, stack, fds float64
}

// Names of the Go and process collectors' series that processFigures
// reads. The heap is go_memstats_heap_alloc_bytes, or heap_inuse when only
// that is there.
const (
	metricHeapAlloc = "go_memstats_heap_alloc_bytes"
	metricHeapInuse = "go_memstats_heap_inuse_bytes"
	metricStack     = "go_memstats_stack_inuse_bytes"
	metricFDs       = "process_open_fds"
)

// readProcess scrapes url for the relay process's figures.
func readProcess(ctx context.Context, url string) (processFigures, error) {
	ms, err := scrape(ctx, url)
	if err != nil {
		return processFigures{}, err
	}
	f := processFigures{heap: -1, stack: -1, fds: -1}
	inuse := -1.0
	for _, s := range ms {
		switch s.name {
		case metricHeapAlloc:
			f.heap = s.value
		case metricHeapInuse:
			inuse = s.value
		case metricStack:
			f.stack = s.value
		case metricFDs:
			f.fds = s.value
		}
	}
	if f.heap < 0 {
		f.heap = inuse
	}
	return f, nil
}

// complete reports whether every figure is known; missing names them
// otherwise.
func (f processFigures) complete() (ok bool, missing string) {
	var m []string
	if f.heap < 0 {
		m = append(m, metricHeapAlloc)
	}
	if f.stack < 0 {
		m = append(m, metricStack)
	}
	if f.fds < 0 {
		m = append(m, metricFDs)
	}
	return len(m) == 0, strings.Join(m, ", ")
}
