package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Event is one Server-Sent Event as read from a stream.
type Event struct {
	// Type is the "event:" field, or "message" when none was given.
	Type string
	// ID is the last "id:" field seen on the stream.
	ID string
	// Data is the event's data: its "data:" lines joined by '\n'. It is
	// valid only until the next call to Reader.Next.
	Data []byte
}

// AppendEvent appends one event in WHATWG framing to dst: an "event:" line
// (omitted when typ is empty), one "data:" line per line of data, and a
// blank line. typ must not contain CR or LF; data's CR and LF bytes split
// it into lines.
func AppendEvent(dst []byte, typ string, data []byte) []byte {
	if typ != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, typ...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}

// AppendJSONEvent appends an event whose data is v encoded as one line of
// JSON.
func AppendJSONEvent(dst []byte, typ string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("wire: encode %s event: %w", typ, err)
	}
	return AppendEvent(dst, typ, data), nil
}

// AppendComment appends a comment line (": text") to dst. Readers ignore
// comments; the relay sends them as heartbeats. text must not contain CR
// or LF.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ':', ' ')
	dst = append(dst, text...)
	return append(dst, '\n')
}

// DecodeEvent decodes an event's JSON data into v, which must be a pointer
// to one of the event types. Unknown fields are ignored, so newer relays
// may add fields.
func DecodeEvent(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	return nil
}

// ParseConnect decodes and checks a connect event's data.
func ParseConnect(data []byte) (ConnectEvent, error) {
	var ev ConnectEvent
	if err := DecodeEvent(data, &ev); err != nil {
		return ConnectEvent{}, err
	}
	if _, err := ParseToken(ev.Token); err != nil {
		return ConnectEvent{}, fmt.Errorf("%w: connect: %v", ErrBadEvent, err)
	}
	if ev.Callback != PathAccept+ev.Token {
		return ConnectEvent{}, fmt.Errorf("%w: connect: callback %q does not match token", ErrBadEvent, ev.Callback)
	}
	return ev, nil
}

// ParseReady decodes and checks a ready event's data.
func ParseReady(data []byte) (ReadyEvent, error) {
	var ev ReadyEvent
	if err := DecodeEvent(data, &ev); err != nil {
		return ReadyEvent{}, err
	}
	if _, err := ParseToken(ev.Registration); err != nil {
		return ReadyEvent{}, fmt.Errorf("%w: ready: %v", ErrBadEvent, err)
	}
	if ev.HeartbeatMillis <= 0 {
		return ReadyEvent{}, fmt.Errorf("%w: ready: heartbeat %d ms", ErrBadEvent, ev.HeartbeatMillis)
	}
	return ev, nil
}

// Reader reads Server-Sent Events per the WHATWG event-stream grammar: LF,
// CR or CRLF line ends, an optional leading BOM, comment lines, fields with
// or without a value, one optional space after the colon. Unknown fields and
// events are passed over or returned, never an error. Every line and every
// event's data is bounded.
type Reader struct {
	br       *bufio.Reader
	maxLine  int
	maxEvent int
	line     []byte
	data     []byte
	typ      []byte
	id       string
	skipLF   bool // the last line ended in CR: a following LF belongs to it
	started  bool // the BOM check has run
	hasData  bool
	err      error // sticky: once Next fails, it keeps failing the same way
}

// NewReader returns a reader of r. maxLine bounds one line and maxEvent one
// event's data, in bytes; zero or less means DefaultMaxLine and
// DefaultMaxEvent.
func NewReader(r io.Reader, maxLine, maxEvent int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	return &Reader{br: br, maxLine: maxLine, maxEvent: maxEvent}
}

// Next returns the next event. At the end of the stream it returns io.EOF,
// or io.ErrUnexpectedEOF if the stream ended inside an event. An event that
// was not ended by a blank line is not returned. Errors are sticky: after
// one, every later call returns it again, so that the tail of an oversized
// line can never be read as fields.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	ev, err := r.next()
	if err != nil {
		r.err = err
	}
	return ev, err
}

// next reads lines until an event is complete; Next makes its errors
// sticky.
func (r *Reader) next() (Event, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && (r.hasData || len(r.typ) > 0 || len(r.line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if !r.hasData {
				r.typ = r.typ[:0]
				continue
			}
			ev := Event{Type: eventType(r.typ), ID: r.id, Data: r.data}
			if n := len(ev.Data); n > 0 && ev.Data[n-1] == '\n' {
				ev.Data = ev.Data[:n-1]
			}
			r.data = r.data[:0]
			r.typ = r.typ[:0]
			r.hasData = false
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			r.typ = append(r.typ[:0], value...)
		case "data":
			// The joined data is the lines so far with their '\n'
			// separators, plus this line.
			if len(r.data)+len(value) > r.maxEvent {
				return Event{}, fmt.Errorf("%w: over %d bytes", ErrEventTooLarge, r.maxEvent)
			}
			r.data = append(r.data, value...)
			r.data = append(r.data, '\n')
			r.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.id = string(value)
			}
		}
		// "retry" and unknown fields are ignored.
	}
}

// eventType returns an event's type for the text of its event field: the
// known types without allocating, "message" for none.
func eventType(b []byte) string {
	switch string(b) {
	case "":
		return "message"
	case EventReady:
		return EventReady
	case EventConnect:
		return EventConnect
	case EventDrain:
		return EventDrain
	}
	return string(b)
}

// readLine returns the next line without its line end. The slice is valid
// until the next call.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	if !r.started {
		b, err := r.br.Peek(3) // an error means fewer than 3 bytes
		if err != nil && err != io.EOF {
			return nil, err
		}
		r.started = true
		if string(b) == "\xEF\xBB\xBF" {
			_, _ = r.br.Discard(3)
		}
	}
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if r.skipLF {
			r.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return r.line, nil
		case '\r':
			r.skipLF = true
			return r.line, nil
		}
		if len(r.line) >= r.maxLine {
			return nil, fmt.Errorf("%w: over %d bytes", ErrLineTooLong, r.maxLine)
		}
		r.line = append(r.line, c)
	}
}
