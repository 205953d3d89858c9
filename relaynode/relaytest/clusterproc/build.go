package clusterproc

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/procs"
)

// RelayPackage is the import path of the relaynode binary Binary builds.
const RelayPackage = procs.RelayPackage

// BuildBound bounds the build of the relaynode binary (a cold -race build
// on a small machine takes a while).
const BuildBound = 5 * time.Minute

// built is the relaynode binary of this test binary, built once.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Race reports whether Binary builds the relaynode binary with -race:
// when this test binary is race-built. One actor system with remote in a
// process is race clean (two race-built processes, one system each,
// 12,000 protobuf request/replies from 8 goroutines, then one peer killed
// mid-traffic: no race reported); it is two such systems in one process
// that fail -race inside protoactor. So the nodes keep the suite's race
// bar, and a race a node reports fails the test (see StartNode). One
// ordering a node must keep: remote's Start sets gRPC's global logger
// (grpclog.SetLoggerV2, not synchronized), so it must run before any
// other gRPC client, such as etcd's, is created.
const Race = raceBuilt

// Binary builds the relaynode binary (procs.Build), once per test
// binary, into a temporary directory that Main removes, and returns its
// path. A failed build fails every test that asks.
func Binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "clusterproc-")
		if built.err != nil {
			built.err = fmt.Errorf("build relaynode: %w", built.err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), BuildBound)
		defer cancel()
		built.bin, built.err = procs.Build(ctx, built.dir, Race)
	})
	if built.err != nil {
		t.Fatalf("clusterproc: %v", built.err)
	}
	return built.bin
}

// TestingM is what Main wraps and returns: the Run of a *testing.M, and
// what goleak.VerifyTestMain takes.
type TestingM interface{ Run() int }

// Main wraps m so that its Run, once the tests have run, removes the
// relaynode binary Binary built:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(clusterproc.Main(m)) }
func Main(m TestingM) TestingM { return mainM{m} }

type mainM struct{ m TestingM }

// Run runs the tests, then removes the built binary.
func (w mainM) Run() int {
	code := w.m.Run()
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintf(os.Stderr, "clusterproc: remove %s: %v\n", built.dir, err)
		}
	}
	return code
}
