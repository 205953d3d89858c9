package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogFormatJSON runs the binary with -log-format json and checks that
// every line it logs, from start to stop, is one JSON object with slog's
// keys, and that the listen line carries the address.
func TestLogFormatJSON(t *testing.T) {
	cmd := exec.Command(build(t), "-listen", "127.0.0.1:0", "-log-format", "json", "-grace", "1s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var msgs []string
	parse := func(line string) map[string]any {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Fatalf("log line lacks %q: %q", k, line)
			}
		}
		msgs = append(msgs, rec["msg"].(string))
		return rec
	}
	timeout := time.After(20 * time.Second)
	for addr := ""; addr == ""; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stderr ended before the listen line; messages %q", msgs)
			}
			if rec := parse(line); rec["msg"] == "relay listening" {
				addr, _ = rec["addr"].(string)
				if !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Fatalf("listen line addr %q", addr)
				}
			}
		case <-timeout:
			t.Fatalf("no listen line within 20s; messages %q", msgs)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		parse(line)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; messages %q", err, msgs)
	}
	if last := msgs[len(msgs)-1]; last != "stopped" {
		t.Fatalf("last message %q, want stopped; all %q", last, msgs)
	}
}

// TestLogFormatInvalid checks that an unknown -log-format is an error that
// names the flag, before anything listens.
func TestLogFormatInvalid(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"-listen", "127.0.0.1:0", "-log-format", "xml"}, io.Discard, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "-log-format") || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("run -log-format xml = %v, want an error naming -log-format and the value", err)
	}
	if out.Len() != 0 {
		t.Fatalf("logged %q before failing", out.String())
	}
}
