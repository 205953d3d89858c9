package actors

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"

	"github.com/clusterlink-relay/relay/actors/cluster"
	"github.com/clusterlink-relay/relay/wire"
)

// The engine tests of the cluster run ONE engine, without protoactor's
// remote (two remote-enabled actor systems in one process fail -race
// inside the library). A member published for a second node id at this
// engine's own actor address makes the engine take the whole cross-node
// path: the Notify travels, in process, to its own peer actor, exactly the
// message another node would get. Across processes, see
// relaynode/relaytest/clusterproc.

const testPublic = "http://127.0.0.1:9"

func clusteredEngine(t testing.TB, dir cluster.Directory) *Engine {
	t.Helper()
	return newEngine(t, Config{NodeID: "n1", Cluster: &ClusterConfig{Directory: dir, PublicURL: testPublic + "/"}})
}

// otherNode publishes, for node "n2" at this engine's address, a member of
// name whose registration id is reg: dials picking it go the cross-node
// way.
func otherNode(t testing.TB, e *Engine, dir cluster.Directory, name string, reg wire.Token) {
	t.Helper()
	err := dir.Publish(context.Background(), cluster.Publish{Name: name, Authenticated: true,
		Member: cluster.Member{Node: "n2", Registration: reg.String(), ClusterAddr: e.ClusterAddr(), PublicURL: "http://127.0.0.1:10"}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClusterCrossNodeDial runs a cross-node dial end to end: the Notify
// reaches the holder's listener, whose connect event carries the dialed
// node's absolute callback URL; the callback is matched by the dialed
// node's pending dial, and bytes are spliced.
func TestClusterCrossNodeDial(t *testing.T) {
	dir := cluster.NewMemory()
	e := clusteredEngine(t, dir)
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "127.0.0.1:1", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	if ms := dir.Members("svc"); len(ms) != 1 || ms[0].Node != "n1" || ms[0].Registration != reg.ID.String() ||
		ms[0].PublicURL != testPublic {
		t.Fatalf("published %+v, want n1's member %s at %s", ms, reg.ID, testPublic)
	}
	// The same registration, as n2 would publish it: the picks alternate
	// between the local member and the "remote" one.
	otherNode(t, e, dir, "svc", reg.ID)
	var cross, local int
	for i := range 4 {
		pd, err := e.Dial(ctx, "svc", "cli", "127.0.0.1:2")
		if err != nil {
			t.Fatal(err)
		}
		ev := nextEvent(t, reg)
		tok := pd.Token.String()
		switch ev.Connect.Callback {
		case testPublic + wire.PathAccept + tok:
			cross++
		case wire.PathAccept + tok:
			local++
		default:
			t.Fatalf("dial %d: callback %q, want the relative or the absolute accept URL of %s", i, ev.Connect.Callback, tok)
		}
		if ev.Connect.Token != tok || ev.Connect.Client != "cli" || ev.Connect.ClientAddr != "127.0.0.1:2" ||
			ev.Connect.DeadlineUnixMilli != pd.Deadline.UnixMilli() {
			t.Fatalf("dial %d: event %+v, want token %s, client cli, deadline %d", i, ev.Connect, tok, pd.Deadline.UnixMilli())
		}
		// Another registration's id is refused, and the token survives.
		if _, err := e.Callback(ctx, pd.Token, wire.NewToken()); status(err) != http.StatusForbidden {
			t.Fatalf("dial %d: foreign callback: %v, want 403", i, err)
		}
		p, err := e.Callback(ctx, pd.Token, reg.ID)
		if err != nil {
			t.Fatalf("dial %d: callback: %v", i, err)
		}
		if o := pd.Wait(ctx); o.Err != nil || o.Pairing != p {
			t.Fatalf("dial %d: outcome %+v", i, o)
		}
		clientFar, clientNear := tcpPair(t)
		serverFar, serverNear := tcpPair(t)
		p.Offer(Client, clientNear, nil)
		p.Offer(Server, serverNear, nil)
		go func() {
			clientFar.Write([]byte("ping"))
			clientFar.(*net.TCPConn).CloseWrite()
		}()
		if got, err := io.ReadAll(serverFar); err != nil || string(got) != "ping" {
			t.Fatalf("dial %d: server read %q %v", i, got, err)
		}
		serverFar.Write([]byte("pong"))
		serverFar.Close()
		if got, err := io.ReadAll(clientFar); err != nil || string(got) != "pong" {
			t.Fatalf("dial %d: client read %q %v", i, got, err)
		}
		clientFar.Close()
		if _, err := e.Callback(ctx, pd.Token, reg.ID); status(err) != http.StatusGone {
			t.Fatalf("dial %d: replay: %v, want 410", i, err)
		}
	}
	if cross != 2 || local != 2 {
		t.Fatalf("cross %d local %d, want 2 each (round robin over both nodes' members)", cross, local)
	}
	waitLive(t, e, KindPair, 0)
	waitLive(t, e, KindPending, 0)
	st, ok := e.ClusterStats()
	if !ok || st.CrossDials != 2 || st.Notified != 2 || st.Peers["n2"].Sent != 2 || st.Peers["n2"].Failed != 0 {
		t.Fatalf("cluster stats %+v, want 2 cross-node dials, 2 notified, 2 sends to n2", st)
	}
	if es := e.Stats(); es.ForeignToken != 4 || es.Spliced != 4 {
		t.Fatalf("engine stats: foreign %d spliced %d, want 4 and 4", es.ForeignToken, es.Spliced)
	}
}

// TestClusterNotifyRefusals checks the holder's refusals as the dialing
// client sees them: a registration the holder does not hold is 502 and
// counted, a full queue 503, as on one node.
func TestClusterNotifyRefusals(t *testing.T) {
	dir := cluster.NewMemory()
	e := newEngine(t, Config{NodeID: "n1", Limits: Limits{EventQueue: 1},
		Cluster: &ClusterConfig{Directory: dir, PublicURL: testPublic}})
	ctx := context.Background()
	otherNode(t, e, dir, "gone", wire.NewToken())
	pd, err := e.Dial(ctx, "gone", "", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	o := pd.Wait(ctx)
	if status(o.Err) != http.StatusBadGateway || !strings.Contains(o.Err.Error(), "registration ended") {
		t.Fatalf("dial to a registration the holder lacks: %v, want 502 registration ended", o.Err)
	}
	reg, err := e.Register(ctx, RegisterRequest{Name: "full", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	// Only the "remote" member: withdraw the local one from the
	// directory, keep the registration.
	if err := dir.Withdraw(ctx, "full", cluster.Member{Node: "n1", Registration: reg.ID.String()}); err != nil {
		t.Fatal(err)
	}
	otherNode(t, e, dir, "full", reg.ID)
	first, err := e.Dial(ctx, "full", "", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	nextWait := time.Now().Add(2 * time.Second)
	for reg.Queued() != 1 && time.Now().Before(nextWait) {
		time.Sleep(5 * time.Millisecond)
	}
	second, err := e.Dial(ctx, "full", "", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	if o := second.Wait(ctx); status(o.Err) != http.StatusServiceUnavailable || !strings.Contains(o.Err.Error(), "queue full") {
		t.Fatalf("dial to a full queue across nodes: %v, want 503 listener queue full", o.Err)
	}
	first.Cancel()
	st, _ := e.ClusterStats()
	if st.NotifyRefused != 1 || st.Notified != 1 || st.CrossDials != 3 {
		t.Fatalf("cluster stats %+v, want 1 refused notify, 1 notified, 3 cross-node dials", st)
	}
	if e.Stats().QueueFull != 1 {
		t.Fatalf("queue full %d, want 1", e.Stats().QueueFull)
	}
}

// TestClusterRegisterPublishes checks the directory side of registration:
// 409 for a name another node holds, withdrawal when a registration ends,
// and Replaces taking over another node's member.
func TestClusterRegisterPublishes(t *testing.T) {
	dir := cluster.NewMemory()
	e := clusteredEngine(t, dir)
	ctx := context.Background()
	held := wire.NewToken()
	if err := dir.Publish(ctx, cluster.Publish{Name: "taken",
		Member: cluster.Member{Node: "n2", Registration: held.String(), ClusterAddr: "127.0.0.1:1", PublicURL: "http://n2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(ctx, RegisterRequest{Name: "taken"}); status(err) != http.StatusConflict {
		t.Fatalf("unauthenticated registration of n2's name: %v, want 409", err)
	}
	if got := e.Stats().Kinds[KindListener].Live; got != 0 {
		t.Fatalf("%d listeners after a refused registration, want 0", got)
	}
	// A reconnect presenting n2's registration id takes it over.
	reg, err := e.Register(ctx, RegisterRequest{Name: "taken", Replaces: held})
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if ms := dir.Members("taken"); len(ms) != 1 || ms[0].Node != "n1" || ms[0].Registration != reg.ID.String() {
		t.Fatalf("members after takeover %+v, want only n1's", ms)
	}
	reg.Close()
	deadline := time.Now().Add(3 * time.Second)
	for len(dir.Members("taken")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("members %+v 3s after the registration ended, want none", dir.Members("taken"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := e.Dial(ctx, "taken", "", "127.0.0.1:2"); status(err) != http.StatusNotFound {
		t.Fatalf("dial after withdrawal: %v, want 404", err)
	}
	st, _ := e.ClusterStats()
	var publishes, withdraws uint64
	for _, op := range st.Ops {
		var n uint64
		for _, c := range op.Latency.Counts {
			n += c
		}
		switch op.Op {
		case "publish":
			publishes = n
		case "withdraw":
			withdraws = n
		}
	}
	if publishes != 2 || withdraws != 1 {
		t.Fatalf("directory ops: %d publishes, %d withdraws; want 2 and 1", publishes, withdraws)
	}
}

func TestClusterConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{NodeID: "n1", Cluster: &ClusterConfig{PublicURL: testPublic}}, "set one of Cluster.Directory and Cluster.Open"},
		{Config{NodeID: "n1", Cluster: &ClusterConfig{Directory: cluster.NewMemory(), PublicURL: "/relative"}}, "not an absolute"},
		{Config{Cluster: &ClusterConfig{Directory: cluster.NewMemory(), PublicURL: testPublic}}, "needs a NodeID"},
		{Config{NodeID: "n1", Cluster: &ClusterConfig{Directory: cluster.NewMemory(), PublicURL: testPublic, Listen: "nope"}}, "Cluster.Listen"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg.Cluster, err, c.want)
		}
	}
}

// TestClusterNotifyFailover checks a dial whose Notify cannot be
// delivered: it moves to another member of the name, the failed node is
// avoided by the dials after it, and no dial fails.
func TestClusterNotifyFailover(t *testing.T) {
	dir := cluster.NewMemory()
	e := clusteredEngine(t, dir)
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "svc", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	// n3 "died": its member is still listed, at an address nothing
	// answers (no remote runs in this test, so it is a dead letter).
	if err := dir.Publish(ctx, cluster.Publish{Name: "svc", Authenticated: true,
		Member: cluster.Member{Node: "n3", Registration: wire.NewToken().String(), ClusterAddr: "127.0.0.1:1", PublicURL: "http://127.0.0.1:11"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		pd, err := e.Dial(ctx, "svc", "", "127.0.0.1:2")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		ev := nextEvent(t, reg)
		if ev.Connect.Token != pd.Token.String() {
			t.Fatalf("dial %d: event for %s, want %s", i, ev.Connect.Token, pd.Token)
		}
		p, err := e.Callback(ctx, pd.Token, reg.ID)
		if err != nil {
			t.Fatalf("dial %d: callback with the live registration: %v", i, err)
		}
		if o := pd.Wait(ctx); o.Pairing != p {
			t.Fatalf("dial %d: outcome %+v", i, o)
		}
		p.Abort(Server)
	}
	st, _ := e.ClusterStats()
	if st.Peers["n3"].Failed != 1 || st.Peers["n3"].Sent != 1 {
		t.Fatalf("sends to n3 %+v, want one, failed, then n3 avoided", st.Peers["n3"])
	}
	if st.Peers["n1"].Sent != 1 {
		t.Fatalf("sends to n1 (its own peer actor) %+v, want the one retargeted dial", st.Peers["n1"])
	}
}

// TestClusterLocalNameOutOfView checks that a name this node holds is
// served while the directory's view lacks it (after a lost lease, the
// watch reports the node's keys gone until they are published again),
// and that a name nobody holds is still 404.
func TestClusterLocalNameOutOfView(t *testing.T) {
	dir := cluster.NewMemory()
	e := clusteredEngine(t, dir)
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "svc", ClientAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ms := dir.Members("svc")
	if len(ms) != 1 {
		t.Fatalf("published %+v, want one member", ms)
	}
	if err := dir.Withdraw(ctx, "svc", ms[0]); err != nil {
		t.Fatal(err)
	}
	pd, err := e.Dial(ctx, "svc", "cli", "127.0.0.1:2")
	if err != nil {
		t.Fatalf("dial of a local name missing from the directory's view: %v", err)
	}
	if ev := nextEvent(t, reg); ev.Connect.Token != pd.Token.String() || ev.Connect.Callback != wire.PathAccept+pd.Token.String() {
		t.Fatalf("event %+v, want the local connect event of %s", ev.Connect, pd.Token)
	}
	pd.Cancel()
	if _, err := e.Dial(ctx, "nobody", "cli", "127.0.0.1:2"); status(err) != http.StatusNotFound {
		t.Fatalf("dial of an unknown name: %v, want 404", err)
	}
}

// TestClusterLostConnectionFailsFast checks that a Notify to an address
// whose connection remote reported lost fails at once, with no wait for
// the Notify timeout (set far beyond the test's bound here): the only
// member's dial is 503, and a name with a member on this node too fails
// over to it.
func TestClusterLostConnectionFailsFast(t *testing.T) {
	dir := cluster.NewMemory()
	e := newEngine(t, Config{NodeID: "n1", Cluster: &ClusterConfig{Directory: dir, PublicURL: testPublic, NotifyTimeout: time.Minute}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const dead = "127.0.0.1:1"
	for _, name := range []string{"only", "both"} {
		if err := dir.Publish(ctx, cluster.Publish{Name: name, Authenticated: true,
			Member: cluster.Member{Node: "n3", Registration: wire.NewToken().String(), ClusterAddr: dead, PublicURL: "http://127.0.0.1:11"}}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := e.Register(ctx, RegisterRequest{Name: "both", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	// What remote publishes when the stream to a peer breaks.
	e.cl.endpointEvent(&remote.EndpointTerminatedEvent{Address: dead})

	pd, err := e.Dial(ctx, "only", "", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	if o := pd.Wait(ctx); status(o.Err) != http.StatusServiceUnavailable || !strings.Contains(o.Err.Error(), "cluster peer unreachable") {
		t.Fatalf("dial of a name held only behind a lost connection: %+v, want 503 cluster peer unreachable at once", o)
	}
	// Every dial of "both" goes to the local member: the lost address is
	// passed over by the pick, or failed over from.
	for i := range 3 {
		pd, err := e.Dial(ctx, "both", "", "127.0.0.1:2")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if ev := nextEvent(t, reg); ev.Connect.Token != pd.Token.String() {
			t.Fatalf("dial %d: event for %s, want %s", i, ev.Connect.Token, pd.Token)
		}
		pd.Cancel()
	}
	// A connection made again ends it: the next Notify is sent (and, with
	// nothing at the address, waits for its answer).
	e.cl.endpointEvent(&remote.EndpointConnectedEvent{Address: dead})
	if e.cl.downAddr(dead) {
		t.Fatal("address still down after a connected event")
	}
	st, _ := e.ClusterStats()
	if st.Peers["n3"].Failed != 1 || st.Peers["n3"].Sent != 1 {
		t.Fatalf("sends to n3 %+v, want one, failed at once", st.Peers["n3"])
	}
}

// earlyDirectory is a Memory directory whose Publish, before it returns,
// makes another node's dial of the registration it publishes: the Notify
// reaches this node while its registration is published but not yet
// registered here, as when another node's watch outruns this node's own
// registerLocal. It waits until the directory holds the Notify.
type earlyDirectory struct {
	*cluster.Memory
	t     *testing.T
	e     *Engine
	dial  chan *PendingDial
	drain bool // drain the engine once the Notify waits
}

func (d *earlyDirectory) Publish(ctx context.Context, p cluster.Publish) error {
	// Published as n2's, at this engine's address: every dial of it takes
	// the cross-node way, through this engine's own peer actor.
	p.Member.Node = "n2"
	if err := d.Memory.Publish(ctx, p); err != nil {
		return err
	}
	pd, err := d.e.Dial(ctx, p.Name, "cli", "127.0.0.1:2")
	if err != nil {
		d.t.Errorf("dial during the publish: %v", err)
		return nil
	}
	d.dial <- pd
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := d.e.ClusterStats(); st.NotifyWaited == 1 || st.NotifyRefused > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if d.drain {
		d.e.Drain("test")
	}
	return nil
}

// TestClusterNotifyBeforeRegister checks a Notify that comes for a
// registration between its publish and its local registration: it waits
// for the registration and is served (its connect event queued), not
// refused 502 "registration ended".
func TestClusterNotifyBeforeRegister(t *testing.T) {
	dir := &earlyDirectory{Memory: cluster.NewMemory(), t: t, dial: make(chan *PendingDial, 1)}
	e := clusteredEngine(t, dir)
	dir.e = e
	ctx := context.Background()
	reg, err := e.Register(ctx, RegisterRequest{Name: "early", Authenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	pd := <-dir.dial
	ev := nextEvent(t, reg)
	if ev.Connect.Token != pd.Token.String() || ev.Connect.Callback != testPublic+wire.PathAccept+pd.Token.String() {
		t.Fatalf("event %+v, want the early dial's connect event", ev.Connect)
	}
	p, err := e.Callback(ctx, pd.Token, reg.ID)
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	if o := pd.Wait(ctx); o.Err != nil || o.Pairing != p {
		t.Fatalf("outcome %+v, want the pairing", o)
	}
	p.Abort(Client)
	p.Abort(Server)
	st, _ := e.ClusterStats()
	if st.NotifyWaited != 1 || st.NotifyRefused != 0 || st.Notified != 1 {
		t.Fatalf("cluster stats: waited %d refused %d notified %d, want 1, 0, 1", st.NotifyWaited, st.NotifyRefused, st.Notified)
	}
}

// TestClusterNotifyBeforeRegisterDrained checks the other end of the
// wait: the node drains while the Notify waits, so the registration is
// refused, and the Notify with it: 503 relay draining, not a hang.
func TestClusterNotifyBeforeRegisterDrained(t *testing.T) {
	dir := &earlyDirectory{Memory: cluster.NewMemory(), t: t, dial: make(chan *PendingDial, 1), drain: true}
	e := clusteredEngine(t, dir)
	dir.e = e
	ctx := context.Background()
	if _, err := e.Register(ctx, RegisterRequest{Name: "early", Authenticated: true}); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("register on a draining node: %v, want 503", err)
	}
	pd := <-dir.dial
	if o := pd.Wait(ctx); status(o.Err) != http.StatusServiceUnavailable || !strings.Contains(o.Err.Error(), "draining") {
		t.Fatalf("outcome %v, want 503 relay draining", o.Err)
	}
	if st, _ := e.ClusterStats(); st.NotifyWaited != 1 {
		t.Fatalf("waited %d, want 1", st.NotifyWaited)
	}
}
