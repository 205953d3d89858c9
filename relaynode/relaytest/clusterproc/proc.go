package clusterproc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxTail is how many of a process's last stderr lines are kept.
const maxTail = 60

// raceMark is the line the race detector writes when it finds a race.
const raceMark = "WARNING: DATA RACE"

// proc is a started subprocess whose stderr is read line by line.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process has been waited for
	err    error         // Wait's result, once done is closed
	onLine func(string)  // called for each line, from the reader

	mu        sync.Mutex
	tail      []string
	races     int
	raceLines []string // the first race reports, whole
	inRace    bool
}

// maxRaceLines bounds the lines of race reports a proc keeps.
const maxRaceLines = 400

// startProc starts cmd, its stdout discarded and its stderr read by a
// goroutine that calls onLine (if not nil) for each line, then waits for
// the process.
func startProc(name string, cmd *exec.Cmd, onLine func(string)) (*proc, error) {
	orphanKill(cmd)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: stderr pipe: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), onLine: onLine}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.line(sc.Text())
		}
		// A line longer than the buffer stops the scan; drain the rest so
		// the process never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// line accounts one stderr line.
func (p *proc) line(s string) {
	p.mu.Lock()
	p.tail = append(p.tail, s)
	if len(p.tail) > maxTail {
		p.tail = p.tail[1:]
	}
	if strings.Contains(s, raceMark) {
		p.races++
		p.inRace = true
	}
	if p.inRace {
		if len(p.raceLines) < maxRaceLines {
			p.raceLines = append(p.raceLines, s)
		}
		// The race detector ends each report with a line of '='.
		if strings.HasPrefix(s, "==================") && !strings.Contains(s, raceMark) {
			p.inRace = false
		}
	}
	p.mu.Unlock()
	if p.onLine != nil {
		p.onLine(s)
	}
}

// lines returns the last stderr lines.
func (p *proc) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// raceCount returns how many data races the process reported, and the
// first reports.
func (p *proc) raceCount() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.races, strings.Join(p.raceLines, "\n\t")
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the process to end, then kills
// it and waits up to killWait more. It reports whether the process ended
// within grace.
func (p *proc) stop(sig os.Signal, grace time.Duration) (bool, error) {
	if p.exited() {
		return true, nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true, nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return false, nil
	case <-time.After(killWait):
		return false, fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.cmd.Process.Pid, killWait)
	}
}

// kill ends the process with SIGKILL and waits for it, within killWait.
func (p *proc) kill() error {
	_, err := p.stop(syscall.SIGKILL, killWait)
	return err
}

// killWait bounds the wait for a killed process to be reaped.
const killWait = 10 * time.Second

// describe returns the process's exit and last lines, for an error.
func (p *proc) describe() string {
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Sprintf("%s (pid %d) %s; last stderr:\n\t%s", p.name, p.cmd.Process.Pid, state, strings.Join(p.lines(), "\n\t"))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv is this process's environment without the variables that
// would set a child's flags behind the test's back (RELAYNODE_*, ETCD_*).
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "RELAYNODE_") && !strings.HasPrefix(e, "ETCD_") {
			env = append(env, e)
		}
	}
	return env
}
