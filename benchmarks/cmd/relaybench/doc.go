// Command relaybench measures a clusterlink relay against a direct TCP
// baseline and a bare splice proxy, in the same process and the same run,
// and reports each figure beside its target in DESIGN.md §8.
//
// Usage:
//
//	go run ./benchmarks/cmd/relaybench [flags]
//
// By default it starts a relay in process on 127.0.0.1:0 and runs every
// mode in turn:
//
//   - latency: sequential dial, 1-byte echo, close: p50, p99, p999 and mean
//     for direct TCP, the bare proxy, the relay cold and the relay with a
//     warm pool of parked callbacks;
//   - rate: concurrent loops of dial, echo and close for a fixed time, for
//     each concurrency in -conc;
//   - bulk: one and eight streams into a sink that counts the bytes;
//   - idle: relay memory and fds per idle spliced pair;
//   - listeners: relay memory per registration, and the dial rate to one
//     name with N live registrations;
//   - mailbox: dial rate and p99 for each actor kind's mailbox setting,
//     each on a fresh relay.
//
// One more mode runs only when -mode names it:
//
//   - stalled: a healthy name's dial p50 and p99 before, and during, a
//     flood of dials at a listener that never reads its stream, until the
//     relay drops that stream at its write deadline.
//
// With -relay it targets a running relaynode instead, registering its own
// echo and sink servers there; -admin then points at the relay's admin
// listener for its /metrics. A table goes to stdout, progress to stderr,
// and -out DIR writes results.json and SVG plots.
package main
