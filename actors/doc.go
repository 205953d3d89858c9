// Package actors is the relay engine: every registration, pending dial and
// spliced pair is a protoactor-go actor that owns its state alone.
//
// The topology, in the order of the flow register → dial → event →
// callback → splice:
//
//		directory ──(child)── listener ──(child)── pending
//		    │                                          │ match
//		    └── tokens, tombstones                     ▼
//		                                   pairing ─► pair (root-level)
//
//	  - The directory maps names to listener actors, mints connect tokens and
//	    routes callbacks by token. It keeps tombstones of used tokens in a
//	    golang-lru cache so that replays get 410; a replay whose tombstone was
//	    evicted still gets 404, never a connection.
//	  - A listener holds one registration's bounded SSE event queue and its
//	    pending children. A full queue refuses that dial only.
//	  - A pending actor waits for one callback until its deadline, which
//	    fires through time.AfterFunc and a message to itself.
//	  - A pair actor owns the two copy goroutines of one spliced connection
//	    and counts bytes each way.
//
// Network I/O never happens inside Receive: it lives in the HTTP handler
// goroutines of package relaynode, which talk to the engine through the
// methods of Engine, and in the pair's copy goroutines. Sockets never travel
// inside actor messages: a Pairing hands them over under a mutex and closes
// any socket that nobody claimed.
package actors
