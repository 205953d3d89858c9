package relaynode_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/clusterlink-relay/relay/endpoints"
	"github.com/clusterlink-relay/relay/relaynode"
)

// ExampleNew runs a relay as an http.Handler, here served on a loopback
// listener, and relays one echo through it.
func ExampleNew() {
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: node}
	go srv.Serve(ln)
	defer srv.Close()
	relay := ln.Addr().String()

	// A server registers "echo"; a client dials it through the relay.
	sl, err := endpoints.ListenRelay("tcp", "echo", "http://"+relay)
	if err != nil {
		log.Fatal(err)
	}
	defer sl.Close()
	go func() {
		c, err := sl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := endpoints.DialTCP("tcp", "echo", relay, "example-client")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "hello through the relay")
	c.(*endpoints.Conn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	fmt.Println("pairs spliced:", node.Stats().Spliced)
	// Output:
	// hello through the relay
	// pairs spliced: 1
}

// ExampleNode_ListenAndServe is the smallest relay: a Node is an
// http.Handler, so http.ListenAndServe serves it. A public relay should use
// Node.ListenAndServe or Node.Serve instead: they add the node's header
// timeout and size limit, the per-prefix cap on connections that have not
// finished their headers, the fd reserve and TLS, which a plain
// http.Server does not have.
func ExampleNode_ListenAndServe() {
	node, err := relaynode.New(relaynode.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	// As a plain handler:
	//	log.Fatal(http.ListenAndServe("127.0.0.1:8080", node))
	// With the node's own server settings (header timeout and size, limits):
	log.Fatal(node.ListenAndServe("127.0.0.1:8080"))
}
