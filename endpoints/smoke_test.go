package endpoints_test

import (
	"io"
	"net"
	"testing"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
)

func TestSmoke(t *testing.T) {
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go node.Serve(ln)
	defer node.Close()
	rl, err := endpoints.ListenRelay("tcp", "echo", "http://"+ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	go func() {
		c, err := rl.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := endpoints.DialTCP("tcp", "echo", ln.Addr().String(), "cli")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	t.Logf("got %q err %v", b, err)
	if string(b) != "hello" {
		t.Fatal("mismatch")
	}
}
