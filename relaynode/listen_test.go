//go:build linux

package relaynode_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode"
)

// TestListenSetsKeepAlive checks that a socket accepted by Listen has the
// relay's keepalive (on, 15 s idle, 15 s interval, 4 probes) from the
// accept itself, so that Serve need not set it again on a hijack.
func TestListenSetsKeepAlive(t *testing.T) {
	ln, err := relaynode.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	cc, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted in 5s")
	}
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	tcp, ok := sc.(*net.TCPConn)
	if !ok {
		t.Fatalf("accepted %T, want *net.TCPConn: a wrapper would stop splice", sc)
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name       string
		level, opt int
		val        int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 4},
	}
	for _, w := range want {
		var got int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			got, gerr = syscall.GetsockoptInt(int(fd), w.level, w.opt)
		}); err != nil {
			t.Fatal(err)
		}
		if gerr != nil {
			t.Fatalf("getsockopt %s: %v", w.name, gerr)
		}
		if got != w.val {
			t.Errorf("%s = %d, want %d", w.name, got, w.val)
		}
	}
}
