package actors

import (
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

func TestParseMailbox(t *testing.T) {
	tests := []struct {
		in      string
		want    Mailbox
		wantErr string
	}{
		{in: "unbounded", want: Mailbox{Kind: MailboxUnbounded}},
		{in: "unbounded-lockfree", want: Mailbox{Kind: MailboxUnboundedLockfree}},
		{in: "bounded", want: Mailbox{Kind: MailboxBounded}},
		{in: "bounded:4096", want: Mailbox{Kind: MailboxBounded, Size: 4096}},
		{in: "bounded:-1", wantErr: "out of range"},
		{in: "bounded:99999999", wantErr: "out of range"},
		{in: "bounded:x", wantErr: "bad size"},
		{in: "unbounded:8", wantErr: "takes no size"},
		{in: "dropping", wantErr: "unknown mailbox kind"},
		{in: "", want: Mailbox{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMailbox(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMailbox(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMailbox(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if tt.in != "" && tt.in != "bounded" && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Limits: Limits{EventQueue: -1}},
		{Limits: Limits{EventQueue: 1 << 20}},
		{Limits: Limits{CallbackTimeout: -1}},
		{Limits: Limits{MaxPendingPerName: -1}},
		{Limits: Limits{Tombstones: -5}},
		{Limits: Limits{CopyBuffer: 100}},
		{Mailboxes: Mailboxes{Pair: Mailbox{Kind: "nope"}}},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("config %d (%+v): Validate() = nil, want error", i, c)
		}
	}
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	err := (&Config{Mailboxes: Mailboxes{Pending: Mailbox{Kind: "x"}}}).Validate()
	if err == nil || !strings.Contains(err.Error(), "mailbox.pending") {
		t.Fatalf("Validate() = %v, want it to name mailbox.pending", err)
	}
	// At most one of the directory, listener and pending mailboxes is
	// bounded: each pair of them sends both ways.
	b := Mailbox{Kind: MailboxBounded, Size: 64}
	for _, c := range []struct {
		m    Mailboxes
		want string
	}{
		{Mailboxes{Directory: b, Listener: b}, "directory and listener"},
		{Mailboxes{Listener: b, Pending: b}, "listener and pending"},
		{Mailboxes{Directory: b, Pending: b}, "directory and pending"},
		{Mailboxes{Directory: b, Listener: b, Pending: b}, "directory and listener and pending"},
	} {
		err := (&Config{Mailboxes: c.m}).Validate()
		if err == nil || !strings.Contains(err.Error(), "mailboxes "+c.want+" are all bounded") {
			t.Errorf("Validate(%+v) = %v, want it to refuse %s", c.m, err, c.want)
		}
	}
	for _, m := range []Mailboxes{{Directory: b}, {Listener: b}, {Pending: b}, {Directory: b, Pair: b}} {
		if err := (&Config{Mailboxes: m}).Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil: one bounded mailbox of the three, and the pair's, are safe", m, err)
		}
	}
}

// TestDispatcher checks which dispatcher the directory, listener and
// pending actors get: inline with every mailbox unbounded, the goroutine
// one as soon as one of the three is bounded. The pair's mailbox has no
// say: nothing a pair sends comes back to it.
func TestDispatcher(t *testing.T) {
	bounded := Mailbox{Kind: MailboxBounded, Size: 64}
	cases := []struct {
		name string
		m    Mailboxes
		want actor.Dispatcher
	}{
		{"defaults", DefaultMailboxes(), inlineDispatcher},
		{"zero", Mailboxes{}, inlineDispatcher},
		{"lock-free everywhere", Mailboxes{Directory: Mailbox{Kind: MailboxUnboundedLockfree}, Listener: Mailbox{Kind: MailboxUnboundedLockfree}, Pending: Mailbox{Kind: MailboxUnboundedLockfree}}, inlineDispatcher},
		{"bounded pair", Mailboxes{Pair: bounded}, inlineDispatcher},
		{"bounded directory", Mailboxes{Directory: bounded}, goroutineDispatcher},
		{"bounded listener", Mailboxes{Listener: bounded}, goroutineDispatcher},
		{"bounded pending", Mailboxes{Pending: bounded}, goroutineDispatcher},
	}
	for _, c := range cases {
		if got := c.m.dispatcher(); got != c.want {
			t.Errorf("%s: dispatcher() = %T, want %T", c.name, got, c.want)
		}
	}
}
