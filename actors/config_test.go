package actors

import (
	"strings"
	"testing"
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
}
