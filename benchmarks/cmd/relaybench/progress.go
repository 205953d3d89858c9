package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress writes the bench's status line to stderr: rewritten in place
// with \r on a terminal, one line per step otherwise (where updates within
// a step are left out, so a log stays short).
type progress struct {
	w   io.Writer
	tty bool

	mu    sync.Mutex // guards the following
	shown bool       // a line is on screen without its newline (tty)
	start time.Time
}

// newProgress returns the progress line on w.
func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

// step shows the start of a new step.
func (p *progress) step(format string, args ...any) {
	p.show(fmt.Sprintf(format, args...), true)
}

// update shows how a step is going: on a terminal only.
func (p *progress) update(format string, args ...any) {
	if p.tty {
		p.show(fmt.Sprintf(format, args...), false)
	}
}

// show writes msg: in place on a terminal, as a line for a step otherwise.
func (p *progress) show(msg string, step bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("[%5.1fs] %s", time.Since(p.start).Seconds(), msg)
	if !p.tty {
		if step {
			fmt.Fprintln(p.w, line)
		}
		return
	}
	const width = 100
	if r := []rune(line); len(r) > width {
		line = string(r[:width-1]) + "…"
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.shown = true
}

// done ends the line on a terminal, so that what follows starts clean.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// ticking calls status every 250ms and shows it, on a terminal only, until
// the returned stop is called; stop returns after the ticker's goroutine
// has ended.
func (p *progress) ticking(status func() string) (stop func()) {
	if !p.tty {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				p.update("%s", strings.TrimSpace(status()))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
}
