package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// relayPkg is the import path of the relay binary the spawn mode builds.
const relayPkg = "github.com/clusterlink-relay/relay/relaynode/cmd/relaynode"

// proc is a process the spawn mode started: the relay, or a child of
// relaybench itself. Its stderr is read into log.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *procLog
	done  chan struct{} // closed when the process has been waited for
	err   error         // Wait's result, once done is closed
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// procLog keeps what a process wrote on stderr: the warning and error
// lines of a relay (level=WARN or level=ERROR), the first few in full,
// and the addresses it logged at start.
type procLog struct {
	mu       sync.Mutex
	warnings int
	first    []string // up to maxKeptLines warning and error lines
	tail     []string // the last maxKeptLines lines of any kind
	addrs    map[string]string
	ready    chan struct{} // closed once every wanted address is known
	want     []string
}

// maxKeptLines bounds the lines a procLog keeps.
const maxKeptLines = 8

// addrLine matches the relay's "<what> listening" log lines.
var addrLine = regexp.MustCompile(`msg="(relay|admin) listening" addr=(\S+)`)

// newProcLog returns a log that closes ready once the relay has logged
// the address of each of want ("relay", "admin").
func newProcLog(want ...string) *procLog {
	l := &procLog{addrs: map[string]string{}, ready: make(chan struct{}), want: want}
	if len(want) == 0 {
		close(l.ready)
	}
	return l
}

// read consumes r line by line until EOF.
func (l *procLog) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.line(sc.Text())
	}
}

// line accounts one line.
func (l *procLog) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tail = append(l.tail, s)
	if len(l.tail) > maxKeptLines {
		l.tail = l.tail[1:]
	}
	if strings.Contains(s, "level=WARN") || strings.Contains(s, "level=ERROR") {
		// The relay always warns that it runs in open mode.
		if !strings.Contains(s, "open mode") {
			l.warnings++
			if len(l.first) < maxKeptLines {
				l.first = append(l.first, s)
			}
		}
	}
	if m := addrLine.FindStringSubmatch(s); m != nil && len(l.want) > 0 {
		l.addrs[m[1]] = m[2]
		for _, w := range l.want {
			if l.addrs[w] == "" {
				return
			}
		}
		l.want = nil
		close(l.ready)
	}
}

// addr returns the address the relay logged for what.
func (l *procLog) addr(what string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrs[what]
}

// summary returns the warning count, the first warning lines and the
// last lines.
func (l *procLog) summary() (int, []string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warnings, append([]string(nil), l.first...), append([]string(nil), l.tail...)
}

// startProc starts cmd with a stdin pipe and its stderr into log.
func startProc(name string, cmd *exec.Cmd, log *procLog) (*proc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: stdin pipe: %w", name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: stderr pipe: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, log: log, done: make(chan struct{})}
	go func() {
		log.read(stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process: it closes its stdin (a child then exits), sends
// sig if sig is not nil (the relay drains on SIGTERM), and kills it if it
// has not exited within grace. It returns the exit error, if any.
func (p *proc) stop(sig os.Signal, grace time.Duration) error {
	if p == nil {
		return nil
	}
	p.stdin.Close()
	if sig != nil {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not exit within %v: killed", p.name, p.pid(), grace)
	}
	if p.err != nil {
		_, _, tail := p.log.summary()
		return fmt.Errorf("%s (pid %d) exited: %w; last stderr: %s", p.name, p.pid(), p.err, strings.Join(tail, " | "))
	}
	return nil
}

// buildRelay builds the relaynode binary into dir and returns its path.
func buildRelay(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "relaynode")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, relayPkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", relayPkg, err, out)
	}
	return bin, nil
}

// startRelayProc starts the relay binary on loopback ports the kernel
// picks, with its admin listener on, and the extra flags, and returns it
// with its relay and admin addresses.
func startRelayProc(bin string, extra []string) (*proc, string, string, error) {
	args := append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = relayEnv()
	log := newProcLog("relay", "admin")
	p, err := startProc("relaynode", cmd, log)
	if err != nil {
		return nil, "", "", err
	}
	select {
	case <-log.ready:
		return p, log.addr("relay"), log.addr("admin"), nil
	case <-p.done:
		_, _, tail := log.summary()
		return nil, "", "", fmt.Errorf("relaynode %s exited at start: %v; stderr: %s", strings.Join(args, " "), p.err, strings.Join(tail, " | "))
	case <-time.After(childStartTimeout):
		_ = p.stop(nil, time.Second)
		return nil, "", "", fmt.Errorf("relaynode did not log its addresses within %v", childStartTimeout)
	}
}

// relayEnv is the environment of the relay process: this one's, without
// the RELAYNODE_ variables that would set its flags behind the bench's
// back.
func relayEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "RELAYNODE_") {
			env = append(env, e)
		}
	}
	return env
}

// startChild re-executes this binary as a child in role with env added,
// and returns it with the fields of its ready line.
func startChild(role string, env ...string) (*proc, map[string]string, error) {
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
	p, err := startProc(role, cmd, newProcLog())
	if err != nil {
		return nil, nil, err
	}
	line, err := readLine(bufio.NewReader(out), childStartTimeout)
	if err == nil {
		var kv map[string]string
		if kv, err = parseReady(line); err == nil {
			return p, kv, nil
		}
	}
	serr := p.stop(nil, 5*time.Second)
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

// terminate is the signal that drains the relay.
var terminate os.Signal = syscall.SIGTERM
