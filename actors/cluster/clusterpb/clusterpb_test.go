package clusterpb

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestRoundTrip marshals each message and reads it back field for field,
// as a remote send and receive do.
func TestRoundTrip(t *testing.T) {
	deadline := time.Date(2026, 12, 4, 1, 2, 3, 4, time.UTC).UnixNano()
	msgs := []proto.Message{
		&Notify{Name: "svc", Registration: "reg-1", Token: "0123456789abcdef0123456789abcdef",
			ClientName: "web", ClientAddr: "[2001:db8::1]:443", CallbackUrl: "https://b.relay.example/v1/accept/0123",
			DeadlineUnixNano: deadline},
		&NotifyReply{Status: 503, Reason: "listener queue full"},
		&NotifyReply{}, // queued: the zero reply
		&Cancel{Name: "svc", Registration: "reg-1", Token: "0123456789abcdef0123456789abcdef"},
	}
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %T: %v", m, err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatalf("unmarshal %T: %v", m, err)
		}
		if !proto.Equal(m, got) {
			t.Fatalf("%T: round trip gave %v, want %v", m, got, m)
		}
	}
	// A truncated message is an error, never a partial Notify taken as whole.
	b, _ := proto.Marshal(msgs[0])
	for cut := 1; cut < len(b); cut++ {
		var n Notify
		if err := proto.Unmarshal(b[:cut], &n); err == nil && proto.Equal(&n, msgs[0]) {
			t.Fatalf("a Notify cut at %d of %d bytes read back whole", cut, len(b))
		}
	}
}

// TestFullNames pins the messages' protobuf names: protoactor's remote
// finds a message's type by this name on the receiving node, so renaming
// one breaks a cluster whose nodes run different versions.
func TestFullNames(t *testing.T) {
	for m, want := range map[proto.Message]protoreflect.FullName{
		&Notify{}:      "clusterlink.relay.cluster.v1.Notify",
		&NotifyReply{}: "clusterlink.relay.cluster.v1.NotifyReply",
		&Cancel{}:      "clusterlink.relay.cluster.v1.Cancel",
	} {
		if got := m.ProtoReflect().Descriptor().FullName(); got != want {
			t.Errorf("%T is %s, want %s", m, got, want)
		}
	}
}

// fieldLine matches one field declaration of cluster.proto.
var fieldLine = regexp.MustCompile(`(?m)^\s+\w+ \w+ = \d+;`)

// TestGeneratedIsCurrent checks that cluster.pb.go was generated from the
// committed cluster.proto: every message and field of the .proto is in
// the generated descriptor.
func TestGeneratedIsCurrent(t *testing.T) {
	src, err := os.ReadFile("cluster.proto")
	if err != nil {
		t.Fatal(err)
	}
	fd := File_cluster_proto
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "message" {
			if fd.Messages().ByName(protoreflect.Name(f[1])) == nil {
				t.Errorf("message %s is in cluster.proto but not in cluster.pb.go: run go generate", f[1])
			}
		}
	}
	fields := 0
	for i := 0; i < fd.Messages().Len(); i++ {
		fields += fd.Messages().Get(i).Fields().Len()
	}
	if want := len(fieldLine.FindAllString(string(src), -1)); fields != want {
		t.Errorf("cluster.pb.go has %d fields, cluster.proto %d: run go generate", fields, want)
	}
}
