package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
	"github.com/clusterlink-relay/relay/relaynode/relaytest"
)

// binDir holds the example binaries, which each binSet builds once per
// test run.
var binDir string

// TestMain builds the examples into a temporary directory that it
// removes afterwards, and fails the run if a test leaks a goroutine.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples: temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(cleanupM{m, dir})
}

// cleanupM removes the binaries after the tests and before goleak's check
// and os.Exit.
type cleanupM struct {
	m   *testing.M
	dir string
}

// Run runs the tests, then removes the binaries.
func (c cleanupM) Run() int {
	defer os.RemoveAll(c.dir)
	return c.m.Run()
}

// binSet is a set of binaries that one go build writes into a directory
// of their own under binDir, on first use.
type binSet struct {
	sub  string   // the directory, under binDir
	pkgs []string // the packages to build, relative to examples/

	once sync.Once
	err  error // of the build
}

// path returns the path of the named binary of s, building all of them on
// first use. With several packages and -o naming a directory, go build
// writes one binary per package, named after its last path element.
func (s *binSet) path(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(binDir, s.sub)
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		args := append([]string{"build", "-o", dir + string(filepath.Separator)}, s.pkgs...)
		if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
			s.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return filepath.Join(dir, name)
}

// echoBins are the demo, echo and httpserve examples.
var echoBins = &binSet{pkgs: []string{"./demo", "./echo/server", "./echo/client", "./httpserve"}}

// bin returns the path of the named example binary ("demo", "server",
// "client" or "httpserve"), building all of them on first use.
func bin(t testing.TB, name string) string { return echoBins.path(t, name) }

// TestDemo runs the demo with five dials and checks each echo, the HTTP
// gets and the clean shutdown in its output.
func TestDemo(t *testing.T) {
	t.Parallel()
	demo := bin(t, "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo, "-n", "5")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("demo output:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v (context: %v)", err, ctx.Err())
	}
	text := string(out)
	for i := 1; i <= 5; i++ {
		want := fmt.Sprintf("dial %d: ", i)
		line := lineWith(text, want)
		if !strings.Contains(line, `echoed 23 bytes "hello through the relay"`) {
			t.Errorf("demo: line %q is %q, want the echoed message", want, line)
		}
	}
	if got := strings.Count(text, `echo server: echoed 23 bytes`); got != 5 {
		t.Errorf("demo: echo server echoed %d times, want 5", got)
	}
	for _, want := range []string{
		"http get 1: GET http://demo-web/: 200 OK \"hello from demo-web, 127.0.0.1:",
		"http get 2: GET http://demo-web/: 200 OK",
		"shutdown: relay drained and stopped",
		"demo: OK",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// TestEchoServerAndClient runs the echo server and client against a relay:
// the client prints the echo, and the server logs the client's name.
func TestEchoServerAndClient(t *testing.T) {
	t.Parallel()
	server, client := bin(t, "server"), bin(t, "client")
	r := relaytest.Start(t, relaynode.Config{})

	srv := startProc(t, server, "-relay", r.URL, "-name", "echo")
	waitDialable(t, r.Addr, "echo")

	const msg = "bytes that went through the relay and back"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, "-relay", r.Addr, "-name", "echo", "-client", "test-client", "-msg", msg)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("client stdout:\n%s\nclient stderr:\n%s", stdout.Bytes(), stderr.Bytes())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if want := "echo: " + msg + "\n"; !strings.Contains(stdout.String(), want) {
		t.Errorf("client stdout lacks %q", want)
	}

	out := srv.interrupt(t)
	if !strings.Contains(out, "client=test-client") {
		t.Errorf("server log lacks the accepted client's name client=test-client")
	}
}

// TestEchoClientUnknownName dials a name nobody registered: the client
// exits 1 and names the relay's status 404.
func TestEchoClientUnknownName(t *testing.T) {
	t.Parallel()
	client := bin(t, "client")
	r := relaytest.Start(t, relaynode.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, "-relay", r.Addr, "-name", "nobody")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("client output:\n%s", out)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("client against an unknown name: %v, want exit status 1", err)
	}
	if !strings.Contains(string(out), "status 404") {
		t.Errorf("client output lacks the relay's status 404")
	}
}

// TestHTTPServe runs httpserve as a server and as a -get client through a
// relay and checks the response the client prints.
func TestHTTPServe(t *testing.T) {
	t.Parallel()
	httpserve := bin(t, "httpserve")
	r := relaytest.Start(t, relaynode.Config{})

	srv := startProc(t, httpserve, "-relay", r.URL, "-name", "web")
	waitDialable(t, r.Addr, "web")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, httpserve, "-get", "-relay", r.Addr, "-name", "web")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("httpserve -get output:\n%s", out)
	if err != nil {
		t.Fatalf("httpserve -get: %v", err)
	}
	for _, want := range []string{"200 OK", "hello from web through the relay, 127.0.0.1:", `(client "web-client")`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("httpserve -get output lacks %q", want)
		}
	}
	srv.interrupt(t)
}

// waitDialable waits, bounded, until a dial to name through the relay at
// addr succeeds, which proves the server has registered.
func waitDialable(t *testing.T, addr, name string) {
	t.Helper()
	d := endpoints.NewRelayDialer(addr, "probe")
	relaytest.Eventually(t, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", name)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, name+" never became dialable through the relay")
}

// proc is a long-running example binary.
type proc struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{} // closed when cmd has exited; err is set before
	err  error
}

// startProc starts a binary with its stdout and stderr captured. The
// test's cleanup kills it if it still runs and logs its output.
func startProc(t *testing.T, path string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", filepath.Base(path), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		t.Logf("%s output:\n%s", filepath.Base(path), p.out.String())
	})
	return p
}

// interrupt sends SIGINT and asserts that the process exits 0 within 5s.
// It returns the process's output.
func (p *proc) interrupt(t *testing.T) string {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still running 5s after SIGINT", filepath.Base(p.cmd.Path))
	}
	if p.err != nil {
		t.Errorf("%s after SIGINT: %v, want exit status 0", filepath.Base(p.cmd.Path), p.err)
	}
	return p.out.String()
}

// lockedBuffer is a bytes.Buffer that a process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what has been written so far.
func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// lineWith returns the first line of text that starts with prefix, or "".
func lineWith(text, prefix string) string {
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimRight(line, "\n")
		}
	}
	return ""
}
