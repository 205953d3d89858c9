package wire_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/clusterlink-relay/relay/wire"
)

// ev is an expected event; Data is a string for readable tables.
type ev struct {
	Type, ID, Data string
}

func (e ev) String() string { return fmt.Sprintf("{%q id=%q %q}", e.Type, e.ID, e.Data) }

// readAll reads events from r until an error, at most limit times, copying
// each event's data. It returns nil error only if limit was reached.
func readAll(tb testing.TB, r *wire.Reader, limit int) ([]ev, error) {
	tb.Helper()
	var evs []ev
	for range limit {
		e, err := r.Next()
		if err != nil {
			if e.Type != "" || e.ID != "" || e.Data != nil {
				tb.Errorf("Next returned event %+v with error %v", e, err)
			}
			return evs, err
		}
		evs = append(evs, ev{e.Type, e.ID, string(e.Data)})
	}
	return evs, nil
}

func sameEvents(got, want []ev) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// chunkReader returns its chunks one per Read, splitting a chunk only when
// p is too small for it.
type chunkReader struct {
	chunks [][]byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func chunks(parts ...string) io.Reader {
	c := &chunkReader{}
	for _, p := range parts {
		c.chunks = append(c.chunks, []byte(p))
	}
	return c
}

// readerModes deliver the same bytes to the Reader in different Read
// patterns.
var readerModes = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"onebyte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	{"dataerr", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"bufio16", func(b []byte) io.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) }},
}

func TestAppendEventGolden(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		data string
		want string
	}{
		{"connect", "connect", `{"a":1}`, "event: connect\ndata: {\"a\":1}\n\n"},
		{"no type", "", "x", "data: x\n\n"},
		{"empty data", "drain", "", "event: drain\ndata: \n\n"},
		{"empty all", "", "", "data: \n\n"},
		{"LF", "m", "a\nb", "event: m\ndata: a\ndata: b\n\n"},
		{"CRLF", "m", "a\r\nb", "event: m\ndata: a\ndata: b\n\n"},
		{"CR", "m", "a\rb", "event: m\ndata: a\ndata: b\n\n"},
		{"LFCR is two", "", "a\n\rb", "data: a\ndata: \ndata: b\n\n"},
		{"CRCR", "", "a\r\rb", "data: a\ndata: \ndata: b\n\n"},
		{"trailing LF", "", "a\n", "data: a\ndata: \n\n"},
		{"trailing CR", "", "a\r", "data: a\ndata: \n\n"},
		{"leading CRLF", "", "\r\na", "data: \ndata: a\n\n"},
		{"only LF", "", "\n", "data: \ndata: \n\n"},
		{"blank lines", "", "a\n\n\nb", "data: a\ndata: \ndata: \ndata: b\n\n"},
		{"leading space kept", "", " a", "data:  a\n\n"},
		{"colon in data", "", "k: v", "data: k: v\n\n"},
		{"type with spaces", " x y", "d", "event:  x y\ndata: d\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wire.AppendEvent(nil, tt.typ, []byte(tt.data))
			if string(got) != tt.want {
				t.Fatalf("AppendEvent(nil, %q, %q) = %q, want %q", tt.typ, tt.data, got, tt.want)
			}
			prefix := []byte(": p\n")
			got = wire.AppendEvent(prefix, tt.typ, []byte(tt.data))
			if string(got) != ": p\n"+tt.want {
				t.Fatalf("AppendEvent(prefix, %q, %q) = %q, want prefix + %q", tt.typ, tt.data, got, tt.want)
			}
		})
	}
}

func TestAppendComment(t *testing.T) {
	if got, want := string(wire.AppendComment(nil, "hb")), ": hb\n"; got != want {
		t.Errorf("AppendComment(nil, hb) = %q, want %q", got, want)
	}
	if got, want := string(wire.AppendComment(nil, "")), ": \n"; got != want {
		t.Errorf("AppendComment(nil, \"\") = %q, want %q", got, want)
	}
	if got, want := string(wire.AppendComment([]byte("x"), "y")), "x: y\n"; got != want {
		t.Errorf("AppendComment(x, y) = %q, want %q", got, want)
	}
}

func TestAppendJSONEvent(t *testing.T) {
	got, err := wire.AppendJSONEvent(nil, wire.EventDrain, wire.DrainEvent{Reason: "shutdown"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "event: drain\ndata: {\"reason\":\"shutdown\"}\n\n"; string(got) != want {
		t.Fatalf("AppendJSONEvent = %q, want %q", got, want)
	}
	dst := []byte("keep")
	out, err := wire.AppendJSONEvent(dst, "bad", func() {})
	if err == nil {
		t.Fatal("AppendJSONEvent(func) = nil error")
	}
	if string(out) != "keep" {
		t.Fatalf("AppendJSONEvent error path returned %q, want dst unchanged", out)
	}
}

func TestAppendEventAllocs(t *testing.T) {
	data := []byte(`{"token":"AAAAAAAAAAAAAAAAAAAAAQ","client":"c","client_addr":"127.0.0.1:1","callback":"/v1/accept/AAAAAAAAAAAAAAAAAAAAAQ","deadline_ms":1}`)
	multi := []byte("a\r\nb\rc\nd")
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		buf = wire.AppendEvent(buf[:0], wire.EventConnect, data)
	}); n != 0 {
		t.Errorf("AppendEvent with capacity: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		buf = wire.AppendEvent(buf[:0], "", multi)
		buf = wire.AppendComment(buf, "hb")
	}); n != 0 {
		t.Errorf("AppendEvent multi-line + AppendComment: %v allocs per run, want 0", n)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []ev
		wantErr error
	}{
		{"empty", "", nil, io.EOF},
		{"blank lines only", "\n\r\n\r", nil, io.EOF},
		{"LF", "data: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"CRLF", "data: a\r\n\r\n", []ev{{"message", "", "a"}}, io.EOF},
		{"CR", "data: a\r\r", []ev{{"message", "", "a"}}, io.EOF},
		{"CRLF multi", "data: a\r\ndata: b\r\n\r\n", []ev{{"message", "", "a\nb"}}, io.EOF},
		{"CR multi", "data: a\rdata: b\r\r", []ev{{"message", "", "a\nb"}}, io.EOF},
		{"mixed ends", "event: x\rdata: a\r\ndata: b\n\r\n", []ev{{"x", "", "a\nb"}}, io.EOF},
		{"CR CR LF", "data: a\r\r\n", []ev{{"message", "", "a"}}, io.EOF},
		{"LF CR", "data: a\n\rdata: b\n\n", []ev{{"message", "", "a"}, {"message", "", "b"}}, io.EOF},
		{"BOM", "\xEF\xBB\xBFdata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"BOM only", "\xEF\xBB\xBF", nil, io.EOF},
		{"second BOM not skipped", "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", nil, io.EOF},
		{"BOM mid-stream not skipped", "data: a\n\n\xEF\xBB\xBFdata: b\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"partial BOM", "\xEF\xBBdata: a\n\n", nil, io.EOF},
		{"comment", ": hb\ndata: a\n: more\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"bare colon comment", ":\ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"comment only", ": hb\n: hb\n", nil, io.EOF},
		{"comment with data field text", ":data: a\n\n", nil, io.EOF},
		{"data no colon", "data\n\n", []ev{{"message", "", ""}}, io.EOF},
		{"data no colon twice", "data\ndata\n\n", []ev{{"message", "", "\n"}}, io.EOF},
		{"data empty value", "data:\n\n", []ev{{"message", "", ""}}, io.EOF},
		{"data no space", "data:x\n\n", []ev{{"message", "", "x"}}, io.EOF},
		{"one space stripped", "data:  x\n\n", []ev{{"message", "", " x"}}, io.EOF},
		{"trailing space kept", "data: x \n\n", []ev{{"message", "", "x "}}, io.EOF},
		{"tab not stripped", "data:\tx\n\n", []ev{{"message", "", "\tx"}}, io.EOF},
		{"colon in value", "data: a:b\n\n", []ev{{"message", "", "a:b"}}, io.EOF},
		{"joined", "data: a\ndata: b\ndata: c\n\n", []ev{{"message", "", "a\nb\nc"}}, io.EOF},
		{"empty middle line", "data: a\ndata\ndata: c\n\n", []ev{{"message", "", "a\n\nc"}}, io.EOF},
		{"event without data", "event: ping\n\n", nil, io.EOF},
		{"type reset after dataless event", "event: ping\n\ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"type reset after event", "event: x\ndata: a\n\ndata: b\n\n", []ev{{"x", "", "a"}, {"message", "", "b"}}, io.EOF},
		{"last type wins", "event: x\nevent: y\ndata: a\n\n", []ev{{"y", "", "a"}}, io.EOF},
		{"type after data", "data: a\nevent: x\n\n", []ev{{"x", "", "a"}}, io.EOF},
		{"event no colon", "event\ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"event empty", "event: \ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"event message", "event: message\ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"unknown fields", "retry: 1000\nfoo: bar\nfoo\nData: x\n data: y\ndata: a\n\n", []ev{{"message", "", "a"}}, io.EOF},
		{"retry only", "retry: 10\n\n", nil, io.EOF},
		{"known types", "event: ready\ndata: 1\n\nevent: connect\ndata: 2\n\nevent: drain\ndata: 3\n\n",
			[]ev{{"ready", "", "1"}, {"connect", "", "2"}, {"drain", "", "3"}}, io.EOF},
		{"unknown type as is", "event: Connect\ndata: a\n\nevent: x:y\ndata: b\n\n",
			[]ev{{"Connect", "", "a"}, {"x:y", "", "b"}}, io.EOF},
		{"type leading spaces", "event:  x\ndata: a\n\n", []ev{{" x", "", "a"}}, io.EOF},
		{"id retained", "id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n",
			[]ev{{"message", "1", "a"}, {"message", "1", "b"}, {"message", "2", "c"}}, io.EOF},
		{"id without event", "id: 7\n\ndata: a\n\n", []ev{{"message", "7", "a"}}, io.EOF},
		{"id reset to empty", "id: 1\ndata: a\n\nid\ndata: b\n\n",
			[]ev{{"message", "1", "a"}, {"message", "", "b"}}, io.EOF},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
			[]ev{{"message", "1", "a"}, {"message", "1", "b"}}, io.EOF},
		{"extra blank lines", "data: a\n\n\n\n\ndata: b\n\n", []ev{{"message", "", "a"}, {"message", "", "b"}}, io.EOF},
		{"comment after event", "data: a\n\n: hb\n", []ev{{"message", "", "a"}}, io.EOF},
		{"id after event", "data: a\n\nid: 3\n", []ev{{"message", "", "a"}}, io.EOF},
		{"EOF after data line", "data: a\n", nil, io.ErrUnexpectedEOF},
		{"EOF after CR data line", "data: a\r", nil, io.ErrUnexpectedEOF},
		{"EOF mid line", "data: a", nil, io.ErrUnexpectedEOF},
		{"EOF after event line", "event: x\n", nil, io.ErrUnexpectedEOF},
		{"EOF in second event", "data: a\n\ndata: b\n", []ev{{"message", "", "a"}}, io.ErrUnexpectedEOF},
		{"EOF mid field name", "data: a\n\nda", []ev{{"message", "", "a"}}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, how string, src io.Reader) {
				t.Helper()
				r := wire.NewReader(src, 0, 0)
				got, err := readAll(t, r, len(tt.in)+2)
				if !sameEvents(got, tt.want) {
					t.Fatalf("%s: events %v, want %v", how, got, tt.want)
				}
				if err != tt.wantErr {
					t.Fatalf("%s: error %v, want %v", how, err, tt.wantErr)
				}
			}
			for _, m := range readerModes {
				check(t, m.name, m.wrap([]byte(tt.in)))
			}
			// Every split into two Reads, so a CR ending one Read and
			// its LF starting the next is covered.
			for i := 1; i < len(tt.in); i++ {
				check(t, fmt.Sprintf("split at %d", i), chunks(tt.in[:i], tt.in[i:]))
			}
		})
	}
}

// TestReaderCRLFAcrossReads makes the LF of every CRLF arrive in its own
// Read after the CR.
func TestReaderCRLFAcrossReads(t *testing.T) {
	r := wire.NewReader(chunks("event: x\r", "\ndata: a\r", "\n", "data: b\r", "\n\r", "\n", "data: c\r", "\r", "\n"), 0, 0)
	got, err := readAll(t, r, 10)
	want := []ev{{"x", "", "a\nb"}, {"message", "", "c"}}
	if !sameEvents(got, want) || err != io.EOF {
		t.Fatalf("got %v, %v; want %v, EOF", got, err, want)
	}
}

func TestReaderLineLimit(t *testing.T) {
	const maxLine = 16
	tests := []struct {
		name    string
		in      string
		want    []ev
		wantErr error
	}{
		{"data line exactly max", "data: " + strings.Repeat("x", maxLine-6) + "\n\n",
			[]ev{{"message", "", strings.Repeat("x", maxLine-6)}}, io.EOF},
		{"CRLF line exactly max", "data: " + strings.Repeat("x", maxLine-6) + "\r\n\r\n",
			[]ev{{"message", "", strings.Repeat("x", maxLine-6)}}, io.EOF},
		{"data line max+1", "data: " + strings.Repeat("x", maxLine-5) + "\n\n", nil, wire.ErrLineTooLong},
		{"unterminated max+1", "data: " + strings.Repeat("x", maxLine-5), nil, wire.ErrLineTooLong},
		{"comment max+1", ": " + strings.Repeat("x", maxLine-1) + "\n", nil, wire.ErrLineTooLong},
		{"unknown field max+1", strings.Repeat("x", maxLine+1) + "\n", nil, wire.ErrLineTooLong},
		{"after good event", "data: a\n\n" + strings.Repeat("x", maxLine+1) + "\n",
			[]ev{{"message", "", "a"}}, wire.ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range readerModes {
				r := wire.NewReader(m.wrap([]byte(tt.in)), maxLine, 0)
				got, err := readAll(t, r, len(tt.in)+2)
				if !sameEvents(got, tt.want) {
					t.Fatalf("%s: events %v, want %v", m.name, got, tt.want)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("%s: error %v, want %v", m.name, err, tt.wantErr)
				}
			}
		})
	}
}

// TestReaderEventLimit checks that maxEvent bounds the joined data exactly:
// maxEvent bytes pass, one more fails.
func TestReaderEventLimit(t *testing.T) {
	const maxEvent = 32
	line := func(n int) string { return "data: " + strings.Repeat("x", n) + "\n" }
	tests := []struct {
		name    string
		in      string
		wantLen int // -1: want ErrEventTooLarge
	}{
		{"one line under", line(maxEvent-1) + "\n", maxEvent - 1},
		{"two lines under", line(maxEvent/2-1) + line(maxEvent/2-1) + "\n", maxEvent - 1},
		{"one line over", line(maxEvent+1) + "\n", -1},
		{"many lines over", strings.Repeat(line(4), maxEvent) + "\n", -1},
		{"one line exactly", line(maxEvent) + "\n", maxEvent},
		{"two lines exactly", line(maxEvent/2) + line(maxEvent/2-1) + "\n", maxEvent},
		{"empty lines exactly", strings.Repeat("data\n", maxEvent+1) + "\n", maxEvent},
		{"empty lines over", strings.Repeat("data\n", maxEvent+2) + "\n", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wire.NewReader(strings.NewReader(tt.in), 1024, maxEvent)
			e, err := r.Next()
			if tt.wantLen < 0 {
				if !errors.Is(err, wire.ErrEventTooLarge) {
					t.Fatalf("Next = %d bytes, %v; want ErrEventTooLarge", len(e.Data), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(e.Data) != tt.wantLen {
				t.Fatalf("Next: %d bytes of data, want %d", len(e.Data), tt.wantLen)
			}
		})
	}
	// The limit is per event: many events, each under it, are fine.
	in := strings.Repeat(line(maxEvent/2)+"\n", 100)
	r := wire.NewReader(strings.NewReader(in), 1024, maxEvent)
	got, err := readAll(t, r, 200)
	if len(got) != 100 || err != io.EOF {
		t.Fatalf("read %d events, %v; want 100, EOF", len(got), err)
	}
}

// endless repeats pattern forever, counting the bytes it hands out. After
// cap bytes it returns io.EOF, so a Reader that does not enforce its
// limits ends the test with a wrong error rather than hanging it.
type endless struct {
	pattern []byte
	off     int
	n       int
	cap     int
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n >= e.cap {
		return 0, io.EOF
	}
	p = p[:min(len(p), e.cap-e.n)]
	for i := range p {
		p[i] = e.pattern[e.off]
		e.off = (e.off + 1) % len(e.pattern)
	}
	e.n += len(p)
	return len(p), nil
}

func TestReaderBounded(t *testing.T) {
	const (
		maxLine  = 1000
		maxEvent = 5000
		slack    = 2 * 4096 // the Reader's bufio buffer
	)
	tests := []struct {
		name    string
		pattern string
		wantErr error
	}{
		{"endless line", "a", wire.ErrLineTooLong},
		{"endless data line", "data: aaaaaaaa", wire.ErrLineTooLong},
		{"endless CR-less comment", ": hb", wire.ErrLineTooLong},
		{"endless data lines", "data: " + strings.Repeat("a", 100) + "\n", wire.ErrEventTooLarge},
		{"endless CRLF data lines", "data: abc\r\n", wire.ErrEventTooLarge},
		{"endless empty data lines", "data\r", wire.ErrEventTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &endless{pattern: []byte(tt.pattern), cap: 1 << 22}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r := wire.NewReader(src, maxLine, maxEvent)
			_, err := r.Next()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next = %v after %d bytes, want %v", err, src.n, tt.wantErr)
			}
			// Each line adds at least one byte to the event, so no more
			// than maxEvent lines are read.
			if limit := maxLine + maxEvent*len(tt.pattern) + slack; src.n > limit {
				t.Fatalf("Reader consumed %d bytes before failing, want at most %d", src.n, limit)
			}
			// Growing the line and data buffers by doubling allocates
			// under twice their limits each; the rest is the bufio buffer.
			allocated := after.TotalAlloc - before.TotalAlloc
			if limit := uint64(4*(maxLine+maxEvent) + slack + 4096); allocated > limit {
				t.Fatalf("Reader allocated %d bytes before failing, want at most %d", allocated, limit)
			}
		})
	}
}

func TestReaderDefaults(t *testing.T) {
	ok := "data: " + strings.Repeat("x", wire.DefaultMaxLine-6) + "\n\n"
	r := wire.NewReader(strings.NewReader(ok), 0, -1)
	if e, err := r.Next(); err != nil || len(e.Data) != wire.DefaultMaxLine-6 {
		t.Fatalf("line of DefaultMaxLine: %d bytes, %v", len(e.Data), err)
	}
	long := "data: " + strings.Repeat("x", wire.DefaultMaxLine-5) + "\n\n"
	r = wire.NewReader(strings.NewReader(long), -1, 0)
	if _, err := r.Next(); !errors.Is(err, wire.ErrLineTooLong) {
		t.Fatalf("line of DefaultMaxLine+1: %v, want ErrLineTooLong", err)
	}
	var big strings.Builder
	for big.Len() <= wire.DefaultMaxEvent {
		big.WriteString("data: " + strings.Repeat("y", 1000) + "\n")
	}
	big.WriteString("\n")
	r = wire.NewReader(strings.NewReader(big.String()), 0, 0)
	if _, err := r.Next(); !errors.Is(err, wire.ErrEventTooLarge) {
		t.Fatalf("event over DefaultMaxEvent: %v, want ErrEventTooLarge", err)
	}
}

// TestReaderNextAllocs checks that reading known event types, after the
// buffers have grown, does not allocate.
func TestReaderNextAllocs(t *testing.T) {
	const runs = 100
	stream, _ := connectStream(t, runs+2)
	r := wire.NewReader(bytes.NewReader(stream), 0, 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(runs, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Reader.Next: %v allocs per event, want 0", n)
	}
}

// validStream is a seed for the fuzzers: every event type, comments, ids
// and each line ending.
func validStream(tb testing.TB) []byte {
	tb.Helper()
	b := appendJSON(tb, nil, wire.EventReady, testReady(tb))
	b = wire.AppendComment(b, "hb")
	b = appendJSON(tb, b, wire.EventConnect, testConnect(tb, 0))
	b = append(b, "id: 1\r\nevent: x\rdata: a\r\ndata\n\n"...)
	b = appendJSON(tb, b, wire.EventDrain, wire.DrainEvent{Reason: "bye"})
	return b
}

func FuzzReader(f *testing.F) {
	f.Add(validStream(f))
	f.Add([]byte("\xEF\xBB\xBFdata: a\r\n\r\n"))
	f.Add([]byte("event: ping\n\nid: 1\x002\ndata:  x\rdata\r\r"))
	f.Add([]byte("data: " + strings.Repeat("x", 300) + "\n\n"))
	f.Add([]byte(strings.Repeat("data: "+strings.Repeat("y", 200)+"\n", 6) + "\n"))
	f.Add([]byte("data: a\n\ndata: b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxLine, maxEvent = 256, 1024
		read := func(src io.Reader) ([]ev, error) {
			r := wire.NewReader(src, maxLine, maxEvent)
			var evs []ev
			// Each event consumes at least one byte, so the loop ends
			// with an error.
			for range len(data) + 1 {
				e, err := r.Next()
				if err != nil {
					if err != io.EOF && err != io.ErrUnexpectedEOF &&
						!errors.Is(err, wire.ErrLineTooLong) && !errors.Is(err, wire.ErrEventTooLarge) {
						t.Fatalf("Next: unexpected error %v", err)
					}
					return evs, err
				}
				if len(e.Data) > maxEvent {
					t.Fatalf("Next: %d bytes of data, limit %d", len(e.Data), maxEvent)
				}
				if e.Type == "" || len(e.Type) > maxLine || len(e.ID) > maxLine {
					t.Fatalf("Next: bad event %+v", e)
				}
				if strings.IndexByte(e.ID, 0) >= 0 || strings.ContainsAny(e.Type+e.ID, "\r\n") {
					t.Fatalf("Next: event %+v has NUL, CR or LF in type or id", e)
				}
				if bytes.IndexByte(e.Data, '\r') >= 0 {
					t.Fatalf("Next: data %q has a CR", e.Data)
				}
				evs = append(evs, ev{e.Type, e.ID, string(e.Data)})
			}
			t.Fatalf("no error after %d events", len(data)+1)
			return nil, nil
		}
		got, err := read(bytes.NewReader(data))
		// The Read pattern does not change the result.
		got1, err1 := read(iotest.OneByteReader(bytes.NewReader(data)))
		if !sameEvents(got, got1) || errKind(err) != errKind(err1) {
			t.Fatalf("whole: %v, %v; one byte at a time: %v, %v", got, err, got1, err1)
		}
	})
}

// errKind returns the sentinel a Reader error is or wraps.
func errKind(err error) error {
	for _, kind := range []error{io.EOF, io.ErrUnexpectedEOF, wire.ErrLineTooLong, wire.ErrEventTooLarge} {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return err
}

// normaliseLines replaces each CRLF, CR and LF in b by LF, as the Reader
// joins data lines.
func normaliseLines(b []byte) string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

func FuzzEventRoundTrip(f *testing.F) {
	f.Add("connect", []byte(`{"a":1}`))
	f.Add("", []byte("x"))
	f.Add("m", []byte("a\r\nb\rc\n\nd\r"))
	f.Add(" x", []byte(" y"))
	f.Add(": not a comment", []byte(": z"))
	f.Add("event: a:b", []byte("data: q"))
	f.Add("message", []byte{})
	f.Add("\xEF\xBB\xBF", []byte("\xEF\xBB\xBF\x00"))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		if strings.ContainsAny(typ, "\r\n") {
			t.Skip("AppendEvent: typ must not contain CR or LF")
		}
		enc := wire.AppendEvent(nil, typ, data)
		enc = wire.AppendComment(enc, "hb")
		enc = wire.AppendEvent(enc, typ, data)
		wantType := typ
		if wantType == "" {
			wantType = "message"
		}
		want := ev{wantType, "", normaliseLines(data)}
		r := wire.NewReader(bytes.NewReader(enc), len(enc)+1, len(enc)+1)
		got, err := readAll(t, r, 3)
		if !sameEvents(got, []ev{want, want}) || err != io.EOF {
			t.Fatalf("AppendEvent(%q, %q) = %q read back as %v, %v; want 2 x %v, EOF", typ, data, enc, got, err, want)
		}
	})
}

func FuzzParseConnect(f *testing.F) {
	c := testConnect(f, 0)
	enc := appendJSON(f, nil, "", c)
	f.Add(enc[len("data: ") : len(enc)-2])
	f.Add([]byte(`{"token":"` + c.Token + `","callback":"/v1/accept/` + c.Token + `","client":"\u00e9\ud800","x":null}`))
	f.Add([]byte(`{"token":"AAAAAAAAAAAAAAAAAAAAAA","callback":"/v1/accept/AAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ce, err := wire.ParseConnect(data)
		if err != nil {
			if !errors.Is(err, wire.ErrBadEvent) {
				t.Fatalf("ParseConnect(%q) = %v, does not wrap ErrBadEvent", data, err)
			}
			if ce != (wire.ConnectEvent{}) {
				t.Fatalf("ParseConnect(%q) returned %+v with an error", data, ce)
			}
			return
		}
		tok, err := wire.ParseToken(ce.Token)
		if err != nil || tok.String() != ce.Token {
			t.Fatalf("ParseConnect(%q) accepted token %q: %v", data, ce.Token, err)
		}
		if ce.Callback != wire.PathAccept+ce.Token {
			t.Fatalf("ParseConnect(%q) accepted callback %q", data, ce.Callback)
		}
		// Re-encoding and reading back through the SSE framing gives the
		// same event.
		enc, err := wire.AppendJSONEvent(nil, wire.EventConnect, ce)
		if err != nil {
			t.Fatalf("AppendJSONEvent(%+v): %v", ce, err)
		}
		r := wire.NewReader(bytes.NewReader(enc), len(enc)+1, len(enc)+1)
		e, err := r.Next()
		if err != nil || e.Type != wire.EventConnect {
			t.Fatalf("reading %q: %+v, %v", enc, e, err)
		}
		ce2, err := wire.ParseConnect(e.Data)
		if err != nil || ce2 != ce {
			t.Fatalf("round trip of %+v = %+v, %v", ce, ce2, err)
		}
	})
}

func BenchmarkAppendEvent(b *testing.B) {
	data, err := wire.AppendJSONEvent(nil, "", testConnect(b, 0))
	if err != nil {
		b.Fatal(err)
	}
	data = data[len("data: ") : len(data)-2]
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf = wire.AppendEvent(buf[:0], wire.EventConnect, data)
	}
}

func BenchmarkReaderNext(b *testing.B) {
	const n = 1000
	stream, _ := connectStream(b, n)
	b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
		src := bytes.NewReader(stream)
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			src.Reset(stream)
			r := wire.NewReader(src, 0, 0)
			for range n {
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := r.Next(); err != io.EOF {
				b.Fatalf("after %d events: %v, want EOF", n, err)
			}
		}
	})
}

// TestReaderErrorsStick checks that after an oversized line the reader
// keeps failing, so the line's tail is never read as fields.
func TestReaderErrorsStick(t *testing.T) {
	in := "data: 0123456789ABevent: evil\ndata: inj\n\n"
	r := wire.NewReader(strings.NewReader(in), 16, 0)
	for i := range 3 {
		e, err := r.Next()
		if !errors.Is(err, wire.ErrLineTooLong) {
			t.Fatalf("call %d: Next = %+v, %v; want ErrLineTooLong again", i, e, err)
		}
	}
}

// failOnce fails its first Read with a timeout, then reads from r.
type failOnce struct {
	r      io.Reader
	failed bool
}

var errOnce = errors.New("read timeout")

func (f *failOnce) Read(p []byte) (int, error) {
	if !f.failed {
		f.failed = true
		return 0, errOnce
	}
	return f.r.Read(p)
}

// TestReaderFirstReadError checks that an error from the very first read,
// during the BOM check, is reported rather than lost.
func TestReaderFirstReadError(t *testing.T) {
	r := wire.NewReader(&failOnce{r: strings.NewReader("\xEF\xBB\xBFdata: x\n\n")}, 0, 0)
	if _, err := r.Next(); !errors.Is(err, errOnce) {
		t.Fatalf("Next = %v, want the first read's error", err)
	}
}
