package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/clusterlink-relay/relay/wire"
)

func testConnect(tb testing.TB, i int) wire.ConnectEvent {
	tb.Helper()
	tok := wire.NewToken().String()
	return wire.ConnectEvent{
		Token:             tok,
		Client:            "client-" + string(rune('a'+i%26)),
		ClientAddr:        "127.0.0.1:40000",
		Callback:          wire.PathAccept + tok,
		DeadlineUnixMilli: 1_700_000_000_000 + int64(i),
	}
}

func testReady(tb testing.TB) wire.ReadyEvent {
	tb.Helper()
	return wire.ReadyEvent{Node: "relay-1", Registration: wire.NewToken().String(), HeartbeatMillis: 15000}
}

func appendJSON(tb testing.TB, dst []byte, typ string, v any) []byte {
	tb.Helper()
	out, err := wire.AppendJSONEvent(dst, typ, v)
	if err != nil {
		tb.Fatalf("AppendJSONEvent(%s): %v", typ, err)
	}
	return out
}

// connectStream returns n connect events in one stream.
func connectStream(tb testing.TB, n int) ([]byte, []wire.ConnectEvent) {
	tb.Helper()
	var b []byte
	evs := make([]wire.ConnectEvent, n)
	for i := range evs {
		evs[i] = testConnect(tb, i)
		b = appendJSON(tb, b, wire.EventConnect, evs[i])
	}
	return b, evs
}

// TestReaderTruncated reads every prefix of a valid stream: each must give
// a prefix of the full stream's events, then io.EOF at a boundary between
// events and comments or io.ErrUnexpectedEOF inside one.
func TestReaderTruncated(t *testing.T) {
	var stream []byte
	var full []ev
	var eventEnds []int               // offset just past each event
	boundary := map[int]bool{0: true} // offsets between whole events and comments
	addEvent := func(typ string, v any) {
		start := len(stream)
		stream = appendJSON(t, stream, typ, v)
		data := stream[start+len("event: ")+len(typ)+len("\ndata: ") : len(stream)-2]
		full = append(full, ev{typ, "", string(data)})
		eventEnds = append(eventEnds, len(stream))
		boundary[len(stream)] = true
	}
	addComment := func(text string) {
		stream = wire.AppendComment(stream, text)
		boundary[len(stream)] = true
	}
	addEvent(wire.EventReady, testReady(t))
	addComment("hb")
	for i := range 3 {
		addEvent(wire.EventConnect, testConnect(t, i))
		addComment("hb")
	}
	addEvent(wire.EventDrain, wire.DrainEvent{Reason: "shutting down"})
	addComment("")

	// The full stream parses into the events we built.
	got, err := readAll(t, wire.NewReader(bytes.NewReader(stream), 0, 0), len(stream)+1)
	if !sameEvents(got, full) || err != io.EOF {
		t.Fatalf("full stream: %v, %v; want %v, EOF", got, err, full)
	}
	if _, err := wire.ParseReady([]byte(got[0].Data)); err != nil {
		t.Fatalf("ParseReady: %v", err)
	}
	for _, e := range got[1:4] {
		if _, err := wire.ParseConnect([]byte(e.Data)); err != nil {
			t.Fatalf("ParseConnect: %v", err)
		}
	}

	for i := 0; i <= len(stream); i++ {
		for _, m := range readerModes[:2] {
			r := wire.NewReader(m.wrap(stream[:i]), 0, 0)
			got, err := readAll(t, r, i+2)
			complete := 0
			for complete < len(eventEnds) && eventEnds[complete] <= i {
				complete++
			}
			if !sameEvents(got, full[:complete]) {
				t.Fatalf("%s: prefix %d: events %v, want %v", m.name, i, got, full[:complete])
			}
			wantErr := io.ErrUnexpectedEOF
			if boundary[i] {
				wantErr = io.EOF
			}
			if err != wantErr {
				t.Fatalf("%s: prefix %d (%q): error %v, want %v", m.name, i, stream[max(0, i-10):i], err, wantErr)
			}
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	ready := testReady(t)
	connect := testConnect(t, 7)
	drain := wire.DrainEvent{Reason: "bye \"now\"\n<&>"}
	var stream []byte
	stream = appendJSON(t, stream, wire.EventReady, ready)
	stream = wire.AppendComment(stream, "hb")
	stream = appendJSON(t, stream, wire.EventConnect, connect)
	stream = appendJSON(t, stream, wire.EventDrain, drain)

	r := wire.NewReader(bytes.NewReader(stream), 0, 0)
	next := func(wantType string) []byte {
		t.Helper()
		e, err := r.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if e.Type != wantType {
			t.Fatalf("Next: type %q, want %q", e.Type, wantType)
		}
		return bytes.Clone(e.Data)
	}
	gotReady, err := wire.ParseReady(next(wire.EventReady))
	if err != nil || gotReady != ready {
		t.Fatalf("ParseReady = %+v, %v; want %+v", gotReady, err, ready)
	}
	if got := gotReady.Heartbeat(); got.Milliseconds() != ready.HeartbeatMillis {
		t.Fatalf("Heartbeat() = %v, want %d ms", got, ready.HeartbeatMillis)
	}
	gotConnect, err := wire.ParseConnect(next(wire.EventConnect))
	if err != nil || gotConnect != connect {
		t.Fatalf("ParseConnect = %+v, %v; want %+v", gotConnect, err, connect)
	}
	var gotDrain wire.DrainEvent
	if err := wire.DecodeEvent(next(wire.EventDrain), &gotDrain); err != nil || gotDrain != drain {
		t.Fatalf("DecodeEvent(drain) = %+v, %v; want %+v", gotDrain, err, drain)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next at end: %v, want EOF", err)
	}
}

func TestParseConnectUnknownFields(t *testing.T) {
	tok := validToken(t)
	data := `{"token":"` + tok + `","callback":"/v1/accept/` + tok + `","future":[1,2],"client":"c"}`
	got, err := wire.ParseConnect([]byte(data))
	if err != nil {
		t.Fatalf("ParseConnect: %v", err)
	}
	if got.Token != tok || got.Client != "c" {
		t.Fatalf("ParseConnect = %+v", got)
	}
}

func TestParseConnectRejects(t *testing.T) {
	tok := validToken(t)
	other := validToken(t)
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"not JSON", "hello"},
		{"truncated", `{"token":"` + tok + `"`},
		{"array", "[]"},
		{"null", "null"},
		{"empty object", "{}"},
		{"token wrong type", `{"token":5,"callback":"/v1/accept/5"}`},
		{"deadline wrong type", `{"token":"` + tok + `","callback":"/v1/accept/` + tok + `","deadline_ms":"x"}`},
		{"callback other token", `{"token":"` + tok + `","callback":"/v1/accept/` + other + `"}`},
		{"callback missing", `{"token":"` + tok + `"}`},
		{"callback listen", `{"token":"` + tok + `","callback":"/v1/listen/` + tok + `"}`},
		{"callback trailing slash", `{"token":"` + tok + `","callback":"/v1/accept/` + tok + `/"}`},
		{"callback absolute URL", `{"token":"` + tok + `","callback":"http://relay/v1/accept/` + tok + `"}`},
		{"token missing", `{"callback":"/v1/accept/"}`},
		{"token short", `{"token":"` + tok[:21] + `","callback":"/v1/accept/` + tok[:21] + `"}`},
		{"token padded", `{"token":"` + tok + `==","callback":"/v1/accept/` + tok + `=="}`},
		{"token zero", `{"token":"AAAAAAAAAAAAAAAAAAAAAA","callback":"/v1/accept/AAAAAAAAAAAAAAAAAAAAAA"}`},
		{"token non-canonical", `{"token":"` + nonCanonical(t, tok) + `","callback":"/v1/accept/` + nonCanonical(t, tok) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ParseConnect([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseConnect(%s) = %+v, nil; want error", tt.data, got)
			}
			if !errors.Is(err, wire.ErrBadEvent) {
				t.Fatalf("ParseConnect(%s) = %v, does not wrap ErrBadEvent", tt.data, err)
			}
			if got != (wire.ConnectEvent{}) {
				t.Fatalf("ParseConnect(%s) returned %+v with an error", tt.data, got)
			}
		})
	}
}

func TestParseReadyRejects(t *testing.T) {
	tok := validToken(t)
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"not JSON", "{"},
		{"null", "null"},
		{"registration missing", `{"node":"n","heartbeat_ms":1000}`},
		{"registration short", `{"node":"n","registration":"` + tok[:21] + `","heartbeat_ms":1000}`},
		{"registration zero", `{"node":"n","registration":"AAAAAAAAAAAAAAAAAAAAAA","heartbeat_ms":1000}`},
		{"registration bad char", `{"node":"n","registration":"` + strings.Repeat("+", 22) + `","heartbeat_ms":1000}`},
		{"heartbeat missing", `{"node":"n","registration":"` + tok + `"}`},
		{"heartbeat zero", `{"node":"n","registration":"` + tok + `","heartbeat_ms":0}`},
		{"heartbeat negative", `{"node":"n","registration":"` + tok + `","heartbeat_ms":-1}`},
		{"heartbeat string", `{"node":"n","registration":"` + tok + `","heartbeat_ms":"1000"}`},
		{"heartbeat float", `{"node":"n","registration":"` + tok + `","heartbeat_ms":1.5}`},
		{"heartbeat overflow", `{"node":"n","registration":"` + tok + `","heartbeat_ms":99999999999999999999}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ParseReady([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseReady(%s) = %+v, nil; want error", tt.data, got)
			}
			if !errors.Is(err, wire.ErrBadEvent) {
				t.Fatalf("ParseReady(%s) = %v, does not wrap ErrBadEvent", tt.data, err)
			}
			if got != (wire.ReadyEvent{}) {
				t.Fatalf("ParseReady(%s) returned %+v with an error", tt.data, got)
			}
		})
	}
}

func TestDecodeEventError(t *testing.T) {
	var d wire.DrainEvent
	if err := wire.DecodeEvent([]byte(`{"reason":1}`), &d); !errors.Is(err, wire.ErrBadEvent) {
		t.Fatalf("DecodeEvent = %v, want ErrBadEvent", err)
	}
}

func BenchmarkParseConnect(b *testing.B) {
	data, err := wire.AppendJSONEvent(nil, "", testConnect(b, 0))
	if err != nil {
		b.Fatal(err)
	}
	data = data[len("data: ") : len(data)-2]
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := wire.ParseConnect(data); err != nil {
			b.Fatal(err)
		}
	}
}
