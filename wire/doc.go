// Package wire is the clusterlink relay protocol: the single source of truth
// for routes, headers, Server-Sent Events, tokens and error statuses.
//
// The flow, as the relay and the endpoints speak it:
//
//  1. register: the server sends POST /v1/listen/{name} and keeps the
//     response open. The relay answers 200 text/event-stream and first sends
//     a "ready" event (heartbeat interval, node id, registration id).
//  2. dial: a client sends POST /v1/dial/{name} with Upgrade headers. The
//     relay holds the request until it is matched or its deadline passes.
//  3. event: the relay pushes a "connect" event carrying a single-use token
//     on the registration's stream.
//  4. callback: the server opens a new connection and sends
//     POST /v1/accept/{token} with the registration id header.
//  5. splice: the relay answers 101 Switching Protocols on both requests and
//     copies raw bytes between them. After the 101 the relay writes nothing
//     of its own.
//
// Every refusal is an HTTP status with a short text/plain body, sent before
// any switch to raw bytes.
//
// The framing of both ends lives here too: AppendUpgradeRequest and
// ParseUpgradeRequest for the dial, accept and park requests,
// AppendUpgradeResponse and ParseUpgradeResponse for the 101, and the SSE
// writer and Reader for the registration stream, each bounded
// (MaxUpgradeHead, MaxUpgradeLine, the SSE limits) and fuzzed.
//
// Protocol changelog (ProtocolVersion):
//
//	1: first version: listen, dial and accept routes; ready, connect and
//	   drain events; 128-bit tokens; registration id bound to callbacks;
//	   optional bearer auth (Authorization) on listen and dial; optional
//	   HeaderRegistration on listen to take over the sender's own old
//	   registration of the name.
//
// The package imports the standard library only and treats all input as
// hostile: every reader has a hard size limit checked before allocation.
package wire
