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
// callback is counted and dropped, and only a dead listener ends Accept.
//
// The package never imports the relay engine: a program that only dials
// pulls in nothing but the standard library and package wire.
package endpoints
