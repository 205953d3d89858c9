// Command relaybench measures a clusterlink relay against a direct TCP
// baseline and a bare splice proxy, in the same process and the same run,
// and reports each figure beside its target. The targets are the
// project's, stated in docs/BENCHMARKS.md and set in spawn.go: a warm
// dial p50 at or under the bare proxy's, a cold one within 1.6× of it,
// p99 within 2× the proxy's, a dial rate at 32 loops of at least 0.8× the
// proxy's, bulk at 0.95× the proxy's, and an idle pair in 8 KiB and 2 fds.
//
// -spawn measures the deployment instead: it builds relaynode and runs it
// as its own process with its default flags (plus -relay-flags), the echo
// and sink servers (endpoints, cold and with a warm pool) in a second
// process and the bare proxy in a third (relaybench itself, re-executed
// with RELAYBENCH_CHILD set), and the probe in this one. Its modes are
// latency, rate, bulk and idle, every figure beside both baselines.
//
// -early-data makes the relay paths dial with endpoints.WithEarlyData, so
// that the echo byte goes out behind the dial request.
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
