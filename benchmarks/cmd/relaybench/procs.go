package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// relayLog keeps the warning and error lines a relay wrote on stderr
// (level=WARN or level=ERROR): their count and the first few in full.
// Its line is a procs.NodeConfig's LogLine.
type relayLog struct {
	mu       sync.Mutex
	warnings int
	first    []string // up to maxKeptLines warning and error lines
}

// maxKeptLines bounds the warning lines a relayLog keeps.
const maxKeptLines = 8

// line accounts one line.
func (l *relayLog) line(s string) {
	if !strings.Contains(s, "level=WARN") && !strings.Contains(s, "level=ERROR") {
		return
	}
	// The relay always warns that it runs in open mode.
	if strings.Contains(s, "open mode") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings++
	if len(l.first) < maxKeptLines {
		l.first = append(l.first, s)
	}
}

// summary returns the warning count and the first warning lines.
func (l *relayLog) summary() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warnings, append([]string(nil), l.first...)
}

// relayGrace bounds a relay's drain after SIGTERM; then it is killed.
const relayGrace = 15 * time.Second

// childProc is a child process of relaybench itself, in a role (servers,
// proxy): it serves until its stdin closes.
type childProc struct {
	*procs.Proc
	stdin io.WriteCloser
}

// stop ends the child: it closes its stdin, and kills it if it has not
// exited within grace. It returns the exit error, if any. A nil child is
// no error.
func (c *childProc) stop(grace time.Duration) error {
	if c == nil {
		return nil
	}
	c.stdin.Close()
	inTime, err := c.Stop(nil, grace)
	switch {
	case err != nil:
		return err
	case !inTime:
		return fmt.Errorf("%s (pid %d) did not exit within %v: killed", c.Name(), c.PID(), grace)
	case c.Err() != nil:
		return errors.New(c.Describe())
	}
	return nil
}

// startChild re-executes this binary as a child in role with env added,
// and returns it with the fields of its ready line.
func startChild(role string, env ...string) (*childProc, map[string]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%s child: stdout pipe: %w", role, err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%s child: stdin pipe: %w", role, err)
	}
	p, err := procs.Start(role, cmd, nil)
	if err != nil {
		return nil, nil, err
	}
	c := &childProc{Proc: p, stdin: stdin}
	line, err := readLine(bufio.NewReader(out), childStartTimeout)
	if err == nil {
		var kv map[string]string
		if kv, err = parseReady(line); err == nil {
			return c, kv, nil
		}
	}
	serr := c.stop(5 * time.Second)
	return nil, nil, errors.Join(fmt.Errorf("%s child: %w", role, err), serr)
}

// procFigures are what /proc tells of a process: resident memory and
// open fds.
type procFigures struct {
	RSSBytes float64 `json:"rss_bytes"`
	FDs      float64 `json:"fds"`
}

// readProc reads pid's resident set size and open fd count from /proc.
func readProc(pid int) (procFigures, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procFigures{}, fmt.Errorf("read process status: %w", err)
	}
	var f procFigures
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return procFigures{}, fmt.Errorf("parse VmRSS %q: %w", v, err)
			}
			f.RSSBytes = kb * 1024
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procFigures{}, fmt.Errorf("count process fds: %w", err)
	}
	f.FDs = float64(len(ents))
	return f, nil
}

// settleProc reads pid's figures until its fd count holds still across
// two reads 50ms apart, at most 40 times, and returns the last read.
func settleProc(ctx context.Context, pid int) (procFigures, error) {
	prev, err := readProc(pid)
	if err != nil {
		return procFigures{}, err
	}
	for range 40 {
		select {
		case <-ctx.Done():
			return procFigures{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		f, err := readProc(pid)
		if err != nil {
			return procFigures{}, err
		}
		if f.FDs == prev.FDs {
			return f, nil
		}
		prev = f
	}
	return prev, nil
}
