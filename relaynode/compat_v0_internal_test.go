package relaynode

import "testing"

// TestAppendV0Event checks the event's bytes: capital D, field order, and
// <, > and & escaped as encoding/json does by default (and the original's
// encoder did). The routes only let names through, which never hold those
// bytes; the encoder escapes them all the same.
func TestAppendV0Event(t *testing.T) {
	for _, tt := range []struct{ client, server, want string }{
		{"c1", "svc", "event: connection\nData: {\"Data\":\"\",\"ClientID\":\"c1\",\"ServerID\":\"svc\"}\n\n"},
		{"a<b>", "x&y", "event: connection\nData: {\"Data\":\"\",\"ClientID\":\"a\\u003cb\\u003e\",\"ServerID\":\"x\\u0026y\"}\n\n"},
		{"", "s", "event: connection\nData: {\"Data\":\"\",\"ClientID\":\"\",\"ServerID\":\"s\"}\n\n"},
	} {
		got, err := appendV0Event([]byte("keep:"), tt.client, tt.server)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "keep:"+tt.want {
			t.Errorf("appendV0Event(%q, %q) = %q, want %q", tt.client, tt.server, got, "keep:"+tt.want)
		}
	}
}

func TestV0KeyIsAPair(t *testing.T) {
	var v compatV0
	a, b := &v0Dial{ready: make(chan struct{})}, &v0Dial{ready: make(chan struct{})}
	// Concatenated, both keys would read "ab"+"c" = "a"+"bc".
	if !v.reserve(v0Key{"ab", "c"}, a) || !v.reserve(v0Key{"a", "bc"}, b) {
		t.Fatal("distinct pairs collided")
	}
	if v.reserve(v0Key{"ab", "c"}, b) {
		t.Error("a pair in flight was reserved twice")
	}
	v.drop(v0Key{"ab", "c"}, b) // not its holder: no effect
	if v.claim(v0Key{"a", "bc"}) != b || v.claim(v0Key{"ab", "c"}) != a {
		t.Error("claim returned another pair's dial")
	}
	if v.claim(v0Key{"ab", "c"}) != nil {
		t.Error("a pair was claimed twice")
	}
	if !v.reserve(v0Key{"ab", "c"}, b) {
		t.Error("a claimed pair is still in flight")
	}
}
