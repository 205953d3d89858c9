// Package endpoints is the client and server library of the clusterlink
// relay, behind standard net APIs.
//
// A server behind a firewall listens on the relay by name:
//
//	ln, err := endpoints.ListenRelay("tcp", "echo", "http://relay.example:8080")
//	...
//	conn, err := ln.Accept() // a net.Conn spliced to a client
//
// A client dials that name through the relay:
//
//	conn, err := endpoints.DialTCP("tcp", "echo", "relay.example:8080", "my-client")
//
// Under the hood the listener holds POST /v1/listen/{name} open and reads
// connect events as Server-Sent Events; for each, it calls back with the
// event's single-use token on a new connection, and Accept returns that
// connection once the relay has answered 101. Callbacks run concurrently,
// bounded, so one failed or slow callback never stalls Accept; a failed
// callback is counted and dropped.
//
// A listener outlives its registration stream. When the stream is lost (a
// relay restart, a drain, a link found dead after three missed heartbeats),
// the listener registers again with jittered exponential backoff
// (WithBackoff), presenting its old registration id so that it takes its
// name back at once; Accept blocks meanwhile and then goes on. Only Close,
// or a permanent refusal (400, 401, 403, 404, 409), ends Accept. The
// listener is a *Listener: ln.(*endpoints.Listener).State() and
// WithStateFunc report the registration's state, Failed its failed
// callbacks.
//
// Every relay address may be a comma-separated list of addresses, the
// nodes of a cluster or independent relays: a listener registers at the
// first that accepts and moves to the next when that one dies or drains
// (WithRedundancy holds registrations at several at once, so that losing
// one loses no dial), and a dialer starts each dial at the next address in
// turn and moves on past an address that is down or cannot take the dial.
// A connect event's callback may be an absolute URL, the node a client
// dialed in a cluster, taken only with the relay's scheme and the exact
// accept path of its token.
//
// DialMTLS and ListenMTLS run TLS end to end through the relay: the dialer
// is the TLS client, the listener the TLS server (mutual by default), and
// the relay splices a handshake it is not part of, so it sees ciphertext
// only. Independently, an https:// relay address runs TLS between each
// endpoint and the relay, verified against WithRelayTLS's RootCAs or the
// system roots; it hides names and tokens from the network, not from the
// relay. On a relay with registration auth, listeners present WithToken
// and dialers of guarded names WithDialToken.
//
// The package never imports the relay engine: a program that only dials
// pulls in nothing but the standard library and package wire.
package endpoints
