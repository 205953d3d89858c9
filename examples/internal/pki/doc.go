// Package pki loads, for the MTLS example's server and client, the demo
// certificates that examples/mtls/gencerts writes: a leaf certificate and
// its key, the demo CA that signed the peer's certificate, and the CAs of
// an https:// relay.
package pki
