// Package echo holds the plumbing that the echo examples (examples/echo
// and examples/mtls) and the demo's client share, so that each example's
// main.go keeps only the endpoints calls it is there to show.
//
// A server registers its name with endpoints.ListenRelay or
// endpoints.ListenMTLS and hands the listener to [Serve], which echoes
// every accepted connection until SIGINT or SIGTERM. A client dials the
// server by name through the relay, sends one message with [Exchange] and
// compares the echo with [Check]; [Exit] reports a failed client run.
package echo
