// Package clusterproc runs the processes of a relay cluster for tests: a
// one-member etcd server and relaynode subprocesses, on loopback only.
//
// The multi-node tests must cross processes: protoactor's remote carries
// protobuf only, and a plain struct sent to a PID that happens to be local
// works where a remote one is dropped; two actor systems with remote in
// one process also fail -race inside the library. So each node here is the
// real relaynode binary, built once per test binary by Binary.
//
// It is a thin layer over package procs, which returns errors and leaves
// the cleanup to its caller (relaybench uses it so): here a failure fails
// the test, and every process is ended in the test's cleanup.
//
//   - StartEtcd runs Debian's etcd (/usr/bin/etcd, or $ETCD_BIN) on free
//     127.0.0.1 ports with a temporary data dir. Stop and Start take it
//     away and bring it back on the same ports and data dir, to simulate
//     the loss of etcd. Outside CI a missing etcd skips the test; under CI
//     (CI set) it fails it.
//   - StartNode runs a relaynode with the given flags on free ports, reads
//     the addresses it logs, and waits, within a bound, for its /readyz to
//     answer 200. Kill (SIGKILL) and Term (SIGTERM) end it.
//
// Every process is ended, and waited for, in the test's cleanup, and is
// also killed by the kernel if the test binary dies first (Linux's parent
// death signal). Every wait is bounded; the bounds guard against hangs and
// are never timings to assert. Wrap the test binary's main with Main, so
// that the built binary is removed when the tests end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }
package clusterproc
