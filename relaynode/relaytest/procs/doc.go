// Package procs runs the processes of a relay cluster on loopback: a
// one-member etcd server and relaynode subprocesses. It is the core that
// both the tests (through clusterproc, which wraps it for a testing.TB)
// and relaybench's spawned modes use; every function returns an error, and
// the caller ends what it started (Close, Kill, Term).
//
//   - Build builds the relaynode binary, with -race or without.
//   - StartEtcd runs etcd (EtcdBinary finds it: a flag's value, $ETCD_BIN,
//     /usr/bin/etcd, or etcd on PATH) on free 127.0.0.1 ports with the
//     data dir given, and waits until it answers healthy. Stop and Start
//     take it away and bring it back on the same ports and data dir, to
//     simulate the loss of etcd.
//   - StartNode runs a relaynode with the given flags on free ports, reads
//     the addresses it logs, and waits, within a bound, for its /readyz to
//     answer 200. Kill (SIGKILL) and Term (SIGTERM) end it; Close kills it
//     if it still runs and reports a data race it wrote (ErrRace).
//   - Start runs any other command with its stderr read line by line.
//
// On Linux every process is also killed by the kernel if its starter dies
// first (the parent death signal). Every wait is bounded, by its own
// bound and by the context given; the bounds guard against hangs and are
// never timings to assert. It imports nothing of the project.
package procs
