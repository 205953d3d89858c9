package procs

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

// maxRaceLines bounds the lines of race reports a Proc keeps.
const maxRaceLines = 400

// KillWait bounds the wait for a killed process to be reaped.
const KillWait = 10 * time.Second

// Proc is a started subprocess whose stderr is read line by line: the last
// lines are kept, and the race detector's reports counted.
type Proc struct {
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

// Start starts cmd under name (for errors) and reads its stderr in a
// goroutine, which calls onLine (if not nil) for each line and then waits
// for the process. A nil cmd.Stdout is discarded; a pipe the caller made
// (cmd.StdoutPipe, cmd.StdinPipe) before Start stays the caller's. On
// Linux the process is killed by the kernel if this one dies first.
func Start(name string, cmd *exec.Cmd, onLine func(string)) (*Proc, error) {
	orphanKill(cmd)
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: stderr pipe: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, done: make(chan struct{}), onLine: onLine}
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
func (p *Proc) line(s string) {
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

// Name returns the name the process was started under.
func (p *Proc) Name() string { return p.name }

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has ended and been waited for.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error (nil for a clean exit) once Done
// is closed, and nil before.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Lines returns the last stderr lines.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// Races returns how many data races the process reported, and the first
// reports, their lines joined by "\n\t".
func (p *Proc) Races() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.races, strings.Join(p.raceLines, "\n\t")
}

// Stop sends sig (none if nil) and waits up to grace for the process to
// end, then kills it and waits up to KillWait more. It reports whether
// the process ended within grace; the error is a process not reaped
// after SIGKILL.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) (bool, error) {
	if p.Exited() {
		return true, nil
	}
	if sig != nil {
		_ = p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
		return true, nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return false, nil
	case <-time.After(KillWait):
		return false, fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.PID(), KillWait)
	}
}

// Kill ends the process with SIGKILL and waits for it, within KillWait.
// It does nothing to a process that has ended.
func (p *Proc) Kill() error {
	_, err := p.Stop(syscall.SIGKILL, KillWait)
	return err
}

// Describe returns the process's state (running, or its exit) and last
// stderr lines, for an error.
func (p *Proc) Describe() string {
	state := "running"
	if p.Exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Sprintf("%s (pid %d) %s; last stderr:\n\t%s", p.name, p.PID(), state, strings.Join(p.Lines(), "\n\t"))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// CleanEnv is this process's environment without the variables that
// would set a child's flags behind its starter's back (RELAYNODE_*,
// ETCD_*).
func CleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "RELAYNODE_") && !strings.HasPrefix(e, "ETCD_") {
			env = append(env, e)
		}
	}
	return env
}
