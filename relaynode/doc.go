// Package relaynode is the relay: a Node is an http.Handler that serves the
// protocol of package wire on top of the actor engine of package actors.
//
// A server registers with POST /v1/listen/{name} and reads connect events
// from the held-open response; a client dials with POST /v1/dial/{name};
// the server calls back with POST /v1/accept/{token}; the Node hijacks both
// connections, answers 101 on each, and the engine splices them.
//
// The simplest relay is
//
//	node, err := relaynode.New(relaynode.Config{})
//	...
//	log.Fatal(http.ListenAndServe(":8080", node))
//
// Node.ListenAndServe, Node.Serve and Node.Shutdown add the full lifecycle:
// the Node tracks the connections it hijacked and the streams it holds,
// which http.Server.Shutdown does not.
package relaynode
