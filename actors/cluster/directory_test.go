package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/clusterlink-relay/relay/relaynode/relaytest/clusterproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd on free loopback ports, in its own
// data directory, and returns its client URL. It is stopped with the test.
// A missing etcd skips the test, or fails it under CI.
func startEtcd(t testing.TB) string {
	t.Helper()
	return clusterproc.StartEtcd(t).Endpoint()
}

func newEtcd(t testing.TB, endpoint, node string) *Etcd {
	t.Helper()
	d, err := NewEtcd(EtcdConfig{Endpoints: []string{endpoint}, Node: node, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// eventually polls cond every 20ms for at most bound.
func eventually(t testing.TB, bound time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func member(node, reg string) Member {
	return Member{Node: node, Registration: reg, ClusterAddr: "127.0.0.1:1", PublicURL: "http://" + node + ".example"}
}

// contract checks the Directory contract on one node's view.
func contract(t *testing.T, d Directory, node string) {
	ctx := context.Background()
	if _, ok := d.Pick("svc"); ok {
		t.Fatal("Pick of an empty directory found a member")
	}
	if err := d.Publish(ctx, Publish{Name: "svc", Member: member(node, "r1")}); err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(ctx, Publish{Name: "svc", Member: member(node, "r2")}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second unauthenticated publish: %v, want ErrNameTaken", err)
	}
	if err := d.Publish(ctx, Publish{Name: "svc", Member: member(node, "r3"), Authenticated: true}); err != nil {
		t.Fatalf("authenticated publish: %v", err)
	}
	// Round robin over both members.
	seen := map[string]int{}
	for range 10 {
		m, ok := d.Pick("svc")
		if !ok {
			t.Fatal("Pick found no member")
		}
		seen[m.Registration]++
	}
	if seen["r1"] != 5 || seen["r3"] != 5 {
		t.Fatalf("Pick spread %v, want 5 each of r1 and r3", seen)
	}
	// A replacement takes the member's place.
	if err := d.Publish(ctx, Publish{Name: "svc", Member: member(node, "r4"), Replaces: "r1"}); err != nil {
		t.Fatalf("replace r1: %v", err)
	}
	if err := d.Publish(ctx, Publish{Name: "svc", Member: member(node, "r5"), Replaces: "r1"}); !errors.Is(err, ErrReplacedGone) {
		t.Fatalf("replace r1 twice: %v, want ErrReplacedGone", err)
	}
	got := regs(d.Members("svc"))
	if got != "r3,r4" {
		t.Fatalf("members %s, want r3,r4", got)
	}
	for _, r := range []string{"r3", "r4"} {
		if err := d.Withdraw(ctx, "svc", member(node, r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Withdraw(ctx, "svc", member(node, "r4")); err != nil {
		t.Fatalf("withdraw twice: %v", err)
	}
	if _, ok := d.Pick("svc"); ok {
		t.Fatal("Pick found a member after all were withdrawn")
	}
	// Malformed parts never reach the store.
	for _, p := range []Publish{
		{Name: "a/b", Member: member(node, "r")},
		{Name: "ok", Member: member(node, "")},
		{Name: "ok", Member: member(node, "r\n")},
		{Name: strings.Repeat("n", 129), Member: member(node, "r")},
	} {
		if err := d.Publish(ctx, p); err == nil || errors.Is(err, ErrNameTaken) {
			t.Fatalf("publish %+v: %v, want an invalid-part error", p, err)
		}
	}
}

func regs(ms []Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Registration)
	}
	return strings.Join(s, ",")
}

func TestMemoryContract(t *testing.T) {
	d := NewMemory()
	contract(t, d, "n1")
	d.Close()
	if err := d.Publish(context.Background(), Publish{Name: "x", Member: member("n1", "r")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after Close: %v, want ErrClosed", err)
	}
}

func TestEtcdContract(t *testing.T) {
	d := newEtcd(t, startEtcd(t), "n1")
	contract(t, d, "n1")
}

// TestEtcdAcrossNodes checks what one node publishes on another's view:
// seen through the watch, refused cluster-wide with ErrNameTaken, grouped
// when authenticated, and gone at once when the node closes.
func TestEtcdAcrossNodes(t *testing.T) {
	ep := startEtcd(t)
	a, b := newEtcd(t, ep, "a"), newEtcd(t, ep, "b")
	ctx := context.Background()
	if err := a.Publish(ctx, Publish{Name: "svc", Member: member("a", "ra")}); err != nil {
		t.Fatal(err)
	}
	// After a Sync, b's cache holds what a wrote before it: no waiting.
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := regs(b.Members("svc")); got != "ra" {
		t.Fatalf("b's members of svc right after Sync: %q, want ra", got)
	}
	// Concurrent Syncs share reads, and each sees what was written
	// before it was called.
	errs := make(chan error, 32)
	for i := range 32 {
		go func() {
			name := fmt.Sprintf("burst-%d", i)
			if err := a.Publish(ctx, Publish{Name: name, Member: member("a", "r"+name)}); err != nil {
				errs <- err
				return
			}
			if err := b.Sync(ctx); err != nil {
				errs <- err
				return
			}
			if got := regs(b.Members(name)); got != "r"+name {
				errs <- fmt.Errorf("b's members of %s after Sync: %q", name, got)
				return
			}
			errs <- nil
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := b.Pick("svc"); m.Node != "a" || m.PublicURL != "http://a.example" {
		t.Fatalf("b picked %+v, want a's member with its public URL", m)
	}
	if err := b.Publish(ctx, Publish{Name: "svc", Member: member("b", "rb")}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("b's unauthenticated publish of a's name: %v, want ErrNameTaken", err)
	}
	if err := b.Publish(ctx, Publish{Name: "svc", Member: member("b", "rb"), Authenticated: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return regs(a.Members("svc")) == "ra,rb" }, "a sees the group")
	// Dials on either node spread over both nodes' members.
	seen := map[string]int{}
	for range 6 {
		m, _ := a.Pick("svc")
		seen[m.Node]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Fatalf("a's picks %v, want 3 per node", seen)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return regs(a.Members("svc")) == "ra" }, "b's member gone with its revoked lease")
}

// TestEtcdCrashedNodeExpires checks that a node that stops without a word
// loses its names when its lease expires, and that the name is then free.
func TestEtcdCrashedNodeExpires(t *testing.T) {
	ep := startEtcd(t)
	a := newEtcd(t, ep, "a")
	b, err := NewEtcd(EtcdConfig{Endpoints: []string{ep}, Node: "b", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Publish(ctx, Publish{Name: "svc", Member: member("b", "rb")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return regs(a.Members("svc")) == "rb" }, "a sees b's member")
	b.abandon()
	eventually(t, 15*time.Second, func() bool { return len(a.Members("svc")) == 0 }, "b's member expired with its lease")
	if err := a.Publish(ctx, Publish{Name: "svc", Member: member("a", "ra")}); err != nil {
		t.Fatalf("publish the freed name: %v", err)
	}
}

// TestEtcdLeaseRegained revokes a node's lease behind its back: its
// members vanish, and it publishes them again under a new lease.
func TestEtcdLeaseRegained(t *testing.T) {
	ep := startEtcd(t)
	a, b := newEtcd(t, ep, "a"), newEtcd(t, ep, "b")
	ctx := context.Background()
	for _, r := range []string{"r1", "r2"} {
		if err := a.Publish(ctx, Publish{Name: "svc-" + r, Member: member("a", r)}); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	old := a.lease
	a.mu.Unlock()
	if _, err := b.cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.lease != old
	}, "a took a new lease")
	eventually(t, 15*time.Second, func() bool {
		return regs(b.Members("svc-r1")) == "r1" && regs(b.Members("svc-r2")) == "r2"
	}, "a's members published again, seen by b")
	resp, err := b.cli.Get(ctx, a.key("svc-r1", member("a", "r1")))
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) == old {
		t.Fatalf("a's key after regaining: %v %v, want one key under the new lease", resp, err)
	}
	select {
	case m := <-a.Evicted():
		t.Fatalf("a evicted %+v after its own lease loss", m)
	default:
	}
	eventually(t, 10*time.Second, a.Healthy, "a healthy again under its new lease")
	if st := a.Stats(); st.Losses != 1 || st.Renewals < 1 || !st.Healthy {
		t.Fatalf("a's stats after one loss: %+v, want 1 loss, renewals, healthy", st)
	}
	if st := b.Stats(); st.Losses != 0 {
		t.Fatalf("b's stats: %+v, want no loss", st)
	}
	// a announced itself again under the new lease.
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes after a's regrant: %+v %v, want a and b", nodes, err)
	}
}

// TestEtcdHealthAndSnapshot checks the operator's view of the directory:
// each node's record, the snapshot of every name, and health that follows
// the lease's renewals.
func TestEtcdHealthAndSnapshot(t *testing.T) {
	ep := startEtcd(t)
	a, err := NewEtcd(EtcdConfig{Endpoints: []string{ep}, Node: "a", TTL: 3 * time.Second,
		PublicURL: "http://127.0.0.1:8081"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The cluster address is known once the port is bound, after NewEtcd.
	if err := a.SetClusterAddr("127.0.0.1:7101"); err != nil {
		t.Fatal(err)
	}
	b := newEtcd(t, ep, "b")
	ctx := context.Background()
	for _, p := range []Publish{
		{Name: "x", Member: member("a", "r1")},
		{Name: "y", Member: member("a", "r2")},
	} {
		if err := a.Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish(ctx, Publish{Name: "y", Member: member("b", "r3"), Authenticated: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(a.Snapshot()["y"]) == 2 }, "a sees y's two members")
	snap := a.Snapshot()
	if len(snap) != 2 || regs(snap["x"]) != "r1" || regs(snap["y"]) != "r2,r3" {
		t.Fatalf("snapshot %+v, want x:r1 and y:r2,r3", snap)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var na NodeInfo
	for _, n := range nodes {
		if n.Node == "a" {
			na = n
		}
	}
	if len(nodes) != 2 || na.ClusterAddr != "127.0.0.1:7101" || na.PublicURL != "http://127.0.0.1:8081" || na.LeaseSince.IsZero() {
		t.Fatalf("nodes %+v, want a's record with its addresses and lease start", nodes)
	}
	if !a.Healthy() || a.Stats().LeaseAge <= 0 {
		t.Fatalf("a: healthy %v stats %+v, want healthy with a lease age", a.Healthy(), a.Stats())
	}
	if mem := NewMemory(); !mem.Healthy() || len(mem.Snapshot()) != 0 {
		t.Fatal("an empty Memory must be healthy with an empty snapshot")
	}
	// A node whose keep-alive stops turns unhealthy within its TTL, and a
	// closed one at once.
	c, err := NewEtcd(EtcdConfig{Endpoints: []string{ep}, Node: "c", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Healthy() {
		t.Fatal("c unhealthy right after its grant")
	}
	c.abandon()
	eventually(t, 5*time.Second, func() bool { return !c.Healthy() }, "c unhealthy without renewals")
	if err := b.Close(); err != nil || b.Healthy() {
		t.Fatalf("b after Close: err %v healthy %v, want unhealthy", err, b.Healthy())
	}
}

// TestEtcdTakeoverEvicts checks a cross-node replacement: the new node's
// publish removes the old member in the same transaction, and the old
// node is told, once.
func TestEtcdTakeoverEvicts(t *testing.T) {
	ep := startEtcd(t)
	a, b := newEtcd(t, ep, "a"), newEtcd(t, ep, "b")
	ctx := context.Background()
	if err := a.Publish(ctx, Publish{Name: "svc", Member: member("a", "old")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, Publish{Name: "svc", Member: member("b", "new"), Replaces: "old"}); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	select {
	case m := <-a.Evicted():
		if m.Registration != "old" || m.Node != "a" {
			t.Fatalf("evicted %+v, want a's old member", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a was not told of the takeover within 10s")
	}
	eventually(t, 10*time.Second, func() bool { return regs(a.Members("svc")) == "new" }, "a sees only the new member")
	select {
	case m := <-a.Evicted():
		t.Fatalf("a evicted %+v twice", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestEtcdUnreachable checks the error when etcd does not answer.
func TestEtcdUnreachable(t *testing.T) {
	ep := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	start := time.Now()
	_, err := NewEtcd(EtcdConfig{Endpoints: []string{ep}, Node: "a", DialTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "cluster: etcd") {
		t.Fatalf("NewEtcd with no etcd: %v, want a cluster: etcd error", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("NewEtcd took %v to fail", d)
	}
}

// TestEtcdRestartKeepsOwnName stops etcd for longer than the lease and
// starts it again. etcd restores a lease with its full TTL when it
// restarts, so the node's old keys are still there when it takes a new
// lease and publishes again: an unauthenticated member must keep its name
// (its own old key is no rival), not be evicted as if another node had
// taken it.
func TestEtcdRestartKeepsOwnName(t *testing.T) {
	e := clusterproc.StartEtcd(t)
	a := newEtcd(t, e.Endpoint(), "a")
	ctx := context.Background()
	if err := a.Publish(ctx, Publish{Name: "svc", Member: member("a", "r1")}); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	old := a.lease
	a.mu.Unlock()
	e.Stop()
	eventually(t, 15*time.Second, func() bool { return !a.Healthy() }, "a without its lease while etcd is away")
	time.Sleep(2 * time.Second) // past the lease's TTL
	e.Start()
	eventually(t, 20*time.Second, a.Healthy, "a healthy again")
	eventually(t, 10*time.Second, func() bool { return regs(a.Members("svc")) == "r1" }, "a's member listed again")
	a.mu.Lock()
	lease := a.lease
	a.mu.Unlock()
	resp, err := a.cli.Get(ctx, a.key("svc", member("a", "r1")))
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
		t.Fatalf("a's key after etcd's restart: %v %v, want one key under a's lease %x (old %x)", resp, err, lease, old)
	}
	t.Logf("lease after the restart: %x (old %x)", lease, old)
	select {
	case m := <-a.Evicted():
		t.Fatalf("a evicted its own %+v after etcd's restart", m)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestEtcdRegrantOverOwnKey publishes again under a new lease while the
// old lease still holds the node's keys (what follows an etcd restart,
// which restores leases with their full TTL, when the node's keep-alive
// gave the old lease up first): an unauthenticated member keeps its name
// under the new lease and is not evicted.
func TestEtcdRegrantOverOwnKey(t *testing.T) {
	a := newEtcd(t, startEtcd(t), "a")
	ctx := context.Background()
	if err := a.Publish(ctx, Publish{Name: "svc", Member: member("a", "r1")}); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	old := a.lease
	a.mu.Unlock()
	if err := a.regrant(); err != nil {
		t.Fatalf("regrant over the node's own live key: %v", err)
	}
	a.mu.Lock()
	lease := a.lease
	a.mu.Unlock()
	resp, err := a.cli.Get(ctx, a.key("svc", member("a", "r1")))
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease || lease == old {
		t.Fatalf("a's key after the regrant: %v %v, want one key under the new lease %x (old %x)", resp, err, lease, old)
	}
	select {
	case m := <-a.Evicted():
		t.Fatalf("a evicted its own %+v: its old key was taken for a rival", m)
	case <-time.After(500 * time.Millisecond):
	}
	if ms := a.Members("svc"); regs(ms) != "r1" {
		t.Fatalf("members after the regrant: %+v, want r1", ms)
	}
}
