package endpoints

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterlink-relay/relay/wire"
)

// RelayListener creates listeners on a relay, or on several.
type RelayListener struct {
	relayURL string
	opts     options
}

// NewRelayListener returns a RelayListener for the relay at relayURL
// (host:port, http://host:port or https://host:port). relayURL may be a
// comma-separated list of such addresses: see ListenRelay.
func NewRelayListener(relayURL string, opts ...Option) *RelayListener {
	return &RelayListener{relayURL: relayURL, opts: buildOptions(opts)}
}

// ListenRelay registers address as a name on the relay at relayURL and
// returns a listener for the connections dialed to it; it is
// NewRelayListener(relayURL, opts...).Listen(network, address).
//
// The contract, in full:
//
//   - ListenRelay returns once the relay has confirmed the registration
//     with its ready event, within the handshake timeout
//     (WithHandshakeTimeout, default 10s), or with the first attempt's
//     error: ErrUnsupportedNetwork, wire.ErrBadName, ErrBadRelayAddress,
//     ErrBadRedundancy, ErrNotRelay, a dial or TLS error, a *RelayError
//     (409 name taken, 401 or 403 credentials, 429 or 503 busy),
//     ErrProtocol or context.DeadlineExceeded. This first attempt is not
//     retried.
//   - The returned net.Listener is a *Listener: State and Failed are its
//     methods, and Accept returns *Conn values (*tls.Conn from ListenMTLS).
//   - Reconnect: when the registration stream ends for any reason but
//     Close (a relay restart or drain, a read error, three heartbeat
//     intervals of silence), the listener registers again, with
//     exponential backoff and jitter (WithBackoff, default 100ms to 30s),
//     until it succeeds, Close is called, or a refusal is permanent.
//   - Takeover: each re-registration presents the old registration id
//     (Relay-Registration), so the relay hands the name back at once even
//     if it has not yet noticed the old stream is gone.
//   - Permanent refusals: a re-registration refused with 400, 401, 403,
//     404 or 409 (the name now belongs to someone else) ends the listener;
//     any other failure, ErrNotRelay included, is retried.
//   - Accept blocks across the gap and returns the next relayed
//     connection. A failed callback (or, on an MTLS listener, a failed TLS
//     handshake) is counted in Failed and never returned. Accept returns
//     an error only after Close (a *net.OpError wrapping net.ErrClosed) or
//     after a permanent refusal (a *net.OpError wrapping that
//     *RelayError), once the connections already made are taken.
//   - Connections already accepted are not disturbed by a reconnect or by
//     Close. Close ends the registration, closes connections not yet
//     accepted and returns once every goroutine of the listener is gone.
//   - State reports the stream's state (Connected, Since, Reconnects,
//     LastError, which wraps ErrStreamEnded after a loss); WithStateFunc is
//     called on each change.
//
// Several relays: relayURL may list several relay addresses, separated by
// commas ("https://a:8443,https://b:8443"): the nodes of one cluster, or
// independent relays. Every entry is checked first; an empty entry, a bad
// one or one listed twice is ErrBadRelayAddress naming it.
//
//   - Listen registers at the first listed relay that accepts, trying the
//     next on any failure but a permanent refusal; when all fail, the error
//     joins each relay's (errors.Join).
//   - The registration moves: when its stream ends (the relay died, a read
//     error, a silent link) or its relay sends a drain event, the listener
//     registers at the next relay of the list, presenting its old
//     registration id (in a cluster, that takes the name over at once). A
//     stream that had lasted a second moves without waiting; each further
//     attempt waits the backoff, which grows across the whole list. On a
//     drain event it moves once the callbacks of the dials announced
//     before it have had their answers; the draining stream ends by
//     itself.
//   - Accept, the accepted connections and the accept queue are the
//     listener's, not a relay's: a move disturbs none of them.
//   - WithRedundancy(n) holds n registrations at n different relays at
//     once, each moving on its own to a relay the others do not hold.
//     Connect events from all of them feed the one Accept queue.
//   - A permanent refusal ends the one registration it answers; the
//     listener ends when its last registration has.
//   - When every relay is down the listener keeps trying them in turn,
//     with the backoff capped at its max (WithBackoff), for as long as it
//     lives: Accept blocks, State says Connected false and Retrying, with
//     each relay's LastError, and Close still returns at once.
//   - Connect events may name an absolute callback URL (a cross-node dial
//     in a cluster: the node the client dialed): see Listener.
func ListenRelay(network, address, relayURL string, opts ...Option) (net.Listener, error) {
	return NewRelayListener(relayURL, opts...).Listen(network, address)
}

// Listen registers address (a name) on the relay and returns once the
// relay has confirmed the registration with its ready event, or after the
// handshake timeout (WithHandshakeTimeout). It fails with a *RelayError
// when the relay refuses, for example 409 when the name is taken. The
// returned listener is a *Listener, whose Accept returns *Conn values.
//
// Once registered, the listener keeps its registration alive: when the
// stream ends for any reason but Close (a relay restart, a drain, a link
// found dead after three missed heartbeats), it registers again with
// exponential backoff and jitter (WithBackoff), presenting its old
// registration id so that it takes its name back at once, at the next
// relay when several are listed. Accept keeps returning connections across
// the gap; connections already accepted are not disturbed. Only a
// permanent refusal (400, 401, 403, 404 or 409: the name now belongs to
// someone else) ends the listener.
func (rl *RelayListener) Listen(network, address string) (net.Listener, error) {
	return rl.ListenContext(context.Background(), network, address)
}

// ListenContext is Listen bounded by ctx as well as the handshake timeout.
// ctx bounds the first registration only, not the listener's life.
func (rl *RelayListener) ListenContext(ctx context.Context, network, address string) (net.Listener, error) {
	l, err := rl.listen(ctx, network, address, nil)
	if err != nil {
		return nil, fmt.Errorf("endpoints: listen %q: %w", address, err)
	}
	return l, nil
}

// listen registers name and starts the listener. With cfg set, each
// relayed connection runs a TLS server handshake before Accept gets it.
func (rl *RelayListener) listen(ctx context.Context, network, name string, cfg *tls.Config) (*Listener, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	if err := wire.CheckName(name); err != nil {
		return nil, err
	}
	relays, err := parseRelays(rl.relayURL)
	if err != nil {
		return nil, err
	}
	if rl.opts.redundancy < 1 {
		return nil, fmt.Errorf("%w: WithRedundancy(%d)", ErrBadRedundancy, rl.opts.redundancy)
	}
	want := min(rl.opts.redundancy, len(relays))
	ctxL, cancelL := context.WithCancel(context.Background())
	l := &Listener{
		tls:      cfg,
		relays:   relays,
		network:  network,
		name:     name,
		opts:     rl.opts,
		ctx:      ctxL,
		cancel:   cancelL,
		accepted: make(chan net.Conn, rl.opts.acceptBacklog),
		sem:      make(chan struct{}, rl.opts.callbackWorkers),
		closed:   make(chan struct{}),
		dead:     make(chan struct{}),
		streams:  make(map[*stream]struct{}),
		busy:     make([]int, len(relays)),
		slots:    want,
	}
	l.state.Redundancy = want
	l.state.Relays = make([]RelayState, len(relays))
	for i, r := range relays {
		l.state.Relays[i].Relay = r.String()
	}
	// The first registration: the first relay that accepts, in list order.
	first, errs, _ := l.registerFirstFree(ctx)
	if first == nil {
		cancelL()
		if len(errs) == 1 {
			return nil, errs[0]
		}
		return nil, errors.Join(errs...)
	}
	l.addr = Addr{Name: name, Relay: relays[first.relay].host}
	l.up(first, false)
	l.wg.Add(1)
	go l.slot(first)
	// The others, one attempt at each free relay, in list order; a slot
	// that finds none keeps trying in the background.
	for range want - 1 {
		st, _, end := l.registerFirstFree(ctx)
		switch {
		case st != nil:
			l.up(st, false)
			l.wg.Add(1)
			go l.slot(st)
		case end != nil:
			l.slotEnded(end, false)
		default:
			l.update(func(s *ListenerState) { s.Retrying++ })
			l.wg.Add(1)
			go l.slot(nil)
		}
	}
	l.started.Store(true)
	return l, nil
}

// ListenerState is what a relay listener reports of its registrations.
type ListenerState struct {
	// Connected is true while at least one registration stream is up (a
	// draining one included: it still delivers the dials it announced).
	Connected bool
	// Since is when Connected last changed.
	Since time.Time
	// Reconnects counts successful registrations since Listen returned:
	// re-registrations after a loss, moves to another relay included.
	Reconnects int
	// LastError is why a stream last ended or a registration last failed;
	// nil until then.
	LastError error
	// Registrations is how many registrations are up and not draining:
	// at how many relays the name takes new dials.
	Registrations int
	// Redundancy is how many registrations the listener holds when all is
	// well: WithRedundancy's n, capped at the number of relays.
	Redundancy int
	// Retrying is how many registrations are being re-established (lost,
	// waiting out the backoff or trying a relay).
	Retrying int
	// Relays holds one entry per relay address, in the order given.
	Relays []RelayState
}

// RelayState is a listener's view of one of its relays.
type RelayState struct {
	// Relay is the relay's address as a URL: http://host:port or
	// https://host:port.
	Relay string
	// Registered is true while a registration stream at this relay is up.
	Registered bool
	// Draining is true once the relay has sent its drain event on that
	// stream: it takes no new dials, and the listener has moved on.
	Draining bool
	// Since is when Registered last changed; zero until it first does.
	Since time.Time
	// Failures counts the registrations at this relay that failed since
	// the last one that succeeded.
	Failures int
	// LastError is why the last stream here ended or the last
	// registration here failed; nil until then.
	LastError error
}

// maxHeartbeat bounds the heartbeat interval a listener accepts from a
// ready event, and so how long a silent stream can go unnoticed (three
// intervals).
const maxHeartbeat = 5 * time.Minute

// stream is one registration: its relay, its socket and event reader, and
// the context of its parked callbacks (WithWarmPool), cancelled when it
// ends or drains.
type stream struct {
	relay    int // index in Listener.relays
	conn     *idleConn
	sse      *wire.Reader
	regID    string
	parkCtx  context.Context
	stopPark context.CancelFunc
	up       time.Time      // when the ready event came
	drained  chan struct{}  // closed by the reader at the drain event
	ended    chan struct{}  // closed by the reader once the stream is gone
	calls    sync.WaitGroup // callbacks of its connect events still waiting for their answer
}

// Listener is a name's registration on one relay, or on several, kept
// alive across stream losses: the net.Listener that ListenRelay, Listen,
// ListenContext and ListenMTLS return. See ListenRelay for its contract.
//
// Each registration (one, or WithRedundancy's n) is a slot goroutine that
// owns it and moves it between relays, and each stream has a reader
// goroutine for its events; callback goroutines, at most
// opts.callbackWorkers over all streams, deliver to the one accept queue,
// after the TLS handshake when tls is set.
//
// Callbacks: a connect event's callback is the relative path
// wire.PathAccept+token, called back at the relay that sent the event, or
// an absolute URL, scheme://host:port/v1/accept/TOKEN, called back at that
// host (a cross-node dial in a cluster: the node the client dialed). An
// absolute callback must have the scheme of the registration's relay (an
// https relay's events never send the server to a plaintext host), exactly
// that path for the event's token, and nothing else: no user info, query,
// fragment or escapes. It is verified with the same WithRelayTLS config
// and carries the registration id, as a relative callback does, and never
// the WithToken credentials. Any other callback is refused, logged at warn
// and counted in Failed, so that a hostile relay cannot send the server to
// an arbitrary path or downgrade it to plaintext.
type Listener struct {
	tls     *tls.Config // the MTLS stage, or nil
	relays  []relay
	addr    Addr // the relay of the first registration
	network string
	name    string
	opts    options

	ctx      context.Context // cancelled by Close: aborts callbacks, backoff, re-registration
	cancel   context.CancelFunc
	accepted chan net.Conn // *Conn, or *tls.Conn over one
	sem      chan struct{} // one slot per running callback
	wg       sync.WaitGroup

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	dead      chan struct{} // closed when the last slot ends
	deadErr   error         // set before dead is closed

	failed  atomic.Int64 // callbacks that failed
	started atomic.Bool  // Listen has returned: changes go to the WithStateFunc

	notify sync.Mutex // serializes state changes with their onState calls

	mu      sync.Mutex // guards the following
	streams map[*stream]struct{}
	busy    []int // per relay: streams up, and registrations under way
	slots   int   // slots not ended by a permanent refusal
	state   ListenerState
}

// update applies f to the state under the lock, completes the summary
// fields, and calls the WithStateFunc with the result, in order of change.
func (l *Listener) update(f func(*ListenerState)) {
	l.notify.Lock()
	defer l.notify.Unlock()
	l.mu.Lock()
	s := &l.state
	f(s)
	connected, regs := false, 0
	for _, r := range s.Relays {
		if r.Registered {
			connected = true
			if !r.Draining {
				regs++
			}
		}
	}
	if connected != s.Connected {
		s.Connected, s.Since = connected, time.Now()
	}
	s.Registrations = regs
	snap := l.snapshot()
	l.mu.Unlock()
	if l.opts.onState != nil && l.started.Load() && l.ctx.Err() == nil {
		l.opts.onState(snap)
	}
}

// snapshot copies the state; l.mu is held.
func (l *Listener) snapshot() ListenerState {
	s := l.state
	s.Relays = slices.Clone(s.Relays)
	return s
}

// registerFirstFree makes one attempt at each free relay, in list order,
// and returns the first registration made. Otherwise it returns each
// attempt's error, and the permanent refusal that ended the attempts, if
// one did.
func (l *Listener) registerFirstFree(ctx context.Context) (*stream, []error, error) {
	var errs []error
	for i := range l.relays {
		if !l.reserveFree(i) {
			continue
		}
		st, err := l.register(ctx, i, "")
		if err == nil {
			return st, errs, nil
		}
		l.release(i)
		l.failedAt(i, err)
		errs = append(errs, relayErr(l.relays, i, err))
		if permanent(err) {
			return nil, errs, err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errs, nil
}

// reserveFree reserves relay i if nothing is up or under way there.
func (l *Listener) reserveFree(i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy[i] != 0 {
		return false
	}
	l.busy[i]++
	return true
}

// release undoes reserveFree.
func (l *Listener) release(i int) {
	l.mu.Lock()
	l.busy[i]--
	l.mu.Unlock()
}

// pick reserves the first free relay from index from on, in list order,
// wrapping around.
func (l *Listener) pick(from int) (int, bool) {
	n := len(l.relays)
	for k := range n {
		i := (from + k) % n
		if l.reserveFree(i) {
			return i, true
		}
	}
	return 0, false
}

// failedAt records a failed registration at relay i.
func (l *Listener) failedAt(i int, err error) {
	l.update(func(s *ListenerState) {
		r := &s.Relays[i]
		r.Failures++
		r.LastError = err
		s.LastError = relayErr(l.relays, i, err)
	})
}

// up makes st live: counted, closed by Close, read, and parked on. A
// reconnect counts in Reconnects and ends a retry. It reports false, and
// closes st, when the listener closed first.
func (l *Listener) up(st *stream, reconnected bool) bool {
	ok := true
	l.update(func(s *ListenerState) {
		if l.ctx.Err() != nil {
			ok = false
			return
		}
		l.streams[st] = struct{}{}
		r := &s.Relays[st.relay]
		r.Registered, r.Draining, r.Since, r.Failures = true, false, time.Now(), 0
		if reconnected {
			s.Reconnects++
			s.Retrying--
		}
	})
	if !ok {
		st.stopPark()
		st.conn.Close()
		l.release(st.relay)
		return false
	}
	l.wg.Add(1)
	go l.read(st)
	l.startParking(st)
	return true
}

// read reads st's events until it ends, then lets the relay go.
func (l *Listener) read(st *stream) {
	defer l.wg.Done()
	err := l.readEvents(st)
	st.stopPark()
	st.conn.Close()
	l.update(func(s *ListenerState) {
		delete(l.streams, st)
		l.busy[st.relay]--
		r := &s.Relays[st.relay]
		r.Registered, r.Draining, r.Since = false, false, time.Now()
		if l.ctx.Err() == nil {
			r.LastError = err
			s.LastError = relayErr(l.relays, st.relay, err)
		}
	})
	if l.ctx.Err() == nil {
		l.opts.logger.Debug("stream ended", slog.String("name", l.name),
			slog.String("relay", l.relays[st.relay].String()), slog.Any("err", err))
	}
	close(st.ended)
}

// slot owns one registration: it waits for st (nil: none yet) to end or
// drain, and registers again, at the next free relay, until Close or a
// permanent refusal.
func (l *Listener) slot(st *stream) {
	defer l.wg.Done()
	backoff := l.opts.backoffMin
	var lost *stream
	for {
		if st != nil {
			select {
			case <-st.ended:
			case <-st.drained:
				// The dials this relay announced before its drain get
				// their callbacks answered first: registering elsewhere
				// presents this registration's id, and in a cluster that
				// takeover would end it, and fail those dials.
				if !l.settle(st) {
					return
				}
			case <-l.ctx.Done():
				return
			}
			if l.ctx.Err() != nil {
				return
			}
			lost = st
			l.update(func(s *ListenerState) { s.Retrying++ })
		}
		st = l.acquire(lost, &backoff)
		if st == nil {
			return
		}
		backoff = l.opts.backoffMin
		if !l.up(st, true) {
			return
		}
	}
}

// settle waits until the callbacks of st's connect events have had their
// answers (each is bounded by the handshake timeout) or st has ended. It
// reports false when Close came first.
func (l *Listener) settle(st *stream) bool {
	done := make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		st.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-st.ended:
	case <-l.ctx.Done():
		return false
	}
	return true
}

// acquire registers again after lost (nil: the slot never had a stream),
// at the first free relay after lost's, waiting the backoff before each
// attempt but a quick first move to another relay. It returns nil after
// Close or a permanent refusal.
func (l *Listener) acquire(lost *stream, backoff *time.Duration) *stream {
	var (
		regID string
		from  int
		quick bool
		gone  = true // lost's relay is free again, or there was none
	)
	if lost != nil {
		regID, from = lost.regID, lost.relay+1
		quick = time.Since(lost.up) >= time.Second
		select {
		case <-lost.ended:
		default:
			gone = false
		}
	}
	for attempt := 0; ; attempt++ {
		i, ok := l.pick(from)
		if !ok {
			// Every relay is held by the other slots or draining.
			if !gone {
				select {
				case <-lost.ended:
					gone = true
					continue
				case <-l.ctx.Done():
					return nil
				}
			}
			if !l.sleep(backoff) {
				return nil
			}
			continue
		}
		if attempt > 0 || !quick || i == lost.relay {
			if !l.sleep(backoff) {
				l.release(i)
				return nil
			}
		}
		st, err := l.register(l.ctx, i, regID)
		if err == nil {
			return st
		}
		l.release(i)
		if l.ctx.Err() != nil {
			return nil
		}
		l.failedAt(i, err)
		if permanent(err) {
			l.slotEnded(err, true)
			return nil
		}
		l.opts.logger.Debug("re-register failed", slog.String("name", l.name),
			slog.String("relay", l.relays[i].String()), slog.Any("err", err))
		from = i + 1
	}
}

// sleep waits the jittered backoff and doubles it, capped at the max. It
// reports false when Close came first.
func (l *Listener) sleep(backoff *time.Duration) bool {
	t := time.NewTimer(jitter(*backoff))
	defer t.Stop()
	*backoff = min(2**backoff, l.opts.backoffMax)
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// slotEnded retires a slot refused for good (retrying: one counted in
// Retrying); the last one ends the listener.
func (l *Listener) slotEnded(err error, retrying bool) {
	l.mu.Lock()
	l.slots--
	last := l.slots == 0
	l.mu.Unlock()
	if retrying {
		l.update(func(s *ListenerState) { s.Retrying-- })
	}
	if last {
		l.die(err)
	}
}

// register sends the listen request to relay i and reads the ready event.
// replaces is the id of the registration this one takes over, or "".
func (l *Listener) register(ctx context.Context, i int, replaces string) (*stream, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.handshake)
	defer cancel()
	r := l.relays[i]
	raw, err := r.connect(ctx, &l.opts, l.network)
	if err != nil {
		return nil, err
	}
	conn := &idleConn{Conn: raw}
	var (
		sse   *wire.Reader
		ready wire.ReadyEvent
	)
	req := wire.AppendRequest(make([]byte, 0, 256), r.host, wire.PathListen+l.name,
		wire.HeaderRegistration, replaces, "Authorization", bearerValue(l.opts.token))
	err = exchange(ctx, conn, req, func() error {
		sse, ready, err = readReady(ctx, bufio.NewReaderSize(conn, wire.MaxUpgradeHead), l.name)
		return err
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	// From here every read pushes the deadline out by three heartbeats:
	// any byte, heartbeat comments included, proves the link alive.
	// A relay's heartbeat above maxHeartbeat (or one that would overflow)
	// is taken as maxHeartbeat: a silent link is found dead all the same.
	idle := 3 * time.Duration(min(ready.HeartbeatMillis, maxHeartbeat.Milliseconds())) * time.Millisecond
	conn.idle.Store(int64(idle))
	_ = conn.SetReadDeadline(time.Now().Add(idle))
	parkCtx, stopPark := context.WithCancel(l.ctx)
	return &stream{
		relay: i, conn: conn, sse: sse, regID: ready.Registration,
		parkCtx: parkCtx, stopPark: stopPark, up: time.Now(),
		drained: make(chan struct{}), ended: make(chan struct{}),
	}, nil
}

// readReady reads the answer to a listen request from br: a 200 whose body
// is the registration's event stream, returned with its first event, which
// must be ready. Any other status becomes a *RelayError (ErrNotRelay
// without Relay-Node). The head is bounded by wire.MaxUpgradeHead, each
// event by the SSE reader's limits (wire.DefaultMaxLine, DefaultMaxEvent).
func readReady(ctx context.Context, br *bufio.Reader, name string) (*wire.Reader, wire.ReadyEvent, error) {
	if err := readHead(ctx, br); err != nil {
		return nil, wire.ReadyEvent{}, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, wire.ReadyEvent{}, ctxErr(ctx, fmt.Errorf("%w: %v", ErrProtocol, err))
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get(wire.HeaderNode) == "" {
		return nil, wire.ReadyEvent{}, refusal(resp, "listen", name)
	}
	sse := wire.NewReader(resp.Body, 0, 0)
	ev, err := sse.Next()
	if err != nil {
		return nil, wire.ReadyEvent{}, fmt.Errorf("read ready event: %w", ctxErr(ctx, err))
	}
	if ev.Type != wire.EventReady {
		return nil, wire.ReadyEvent{}, fmt.Errorf("%w: first event %q, want %q", ErrProtocol, ev.Type, wire.EventReady)
	}
	ready, err := wire.ParseReady(ev.Data)
	return sse, ready, err
}

// permanent reports whether a registration error will not go away by
// itself: the name is someone else's, or the request itself is refused.
func permanent(err error) bool {
	var re *RelayError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
		http.StatusNotFound, http.StatusConflict:
		return true
	}
	return false
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// State returns the listener's current state.
func (l *Listener) State() ListenerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshot()
}

func (l *Listener) die(err error) {
	l.deadErr = err
	close(l.dead)
}

// Accept waits for and returns the next relayed connection. A failed
// callback or a lost stream never ends Accept; only Close (net.ErrClosed)
// or a permanent refusal to re-register does.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closed:
		return nil, l.closedErr()
	case <-l.dead:
		// Deliver what the callbacks already made before reporting death.
		select {
		case c := <-l.accepted:
			return c, nil
		default:
		}
		return nil, &net.OpError{Op: "accept", Net: "relay", Addr: l.Addr(), Err: l.deadErr}
	}
}

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "relay", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close ends the registrations, aborts callbacks and re-registrations in
// flight, closes connections not yet accepted, and returns after every
// goroutine of the listener has exited. It is safe to call twice.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.mu.Lock()
		l.cancel()
		for st := range l.streams {
			st.conn.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		for {
			select {
			case c := <-l.accepted:
				closeRaw(c)
			default:
				return
			}
		}
	})
	return nil
}

// Addr returns the name's address on the relay of its first registration.
func (l *Listener) Addr() net.Addr { return l.addr }

// Failed returns the number of callbacks that failed since Listen, and,
// on an MTLS listener, of TLS handshakes that failed. Bad connect events
// count as failed callbacks.
func (l *Listener) Failed() int64 { return l.failed.Load() }

// readEvents reads one stream's events until it ends.
func (l *Listener) readEvents(st *stream) error {
	drained := false
	from := l.relays[st.relay]
	for {
		ev, err := st.sse.Next()
		if err != nil {
			if drained {
				return fmt.Errorf("%w: relay drained: %w", ErrStreamEnded, err)
			}
			return fmt.Errorf("%w: %w", ErrStreamEnded, err)
		}
		switch ev.Type {
		case wire.EventConnect:
			ce, target, err := parseConnect(ev.Data, from)
			if err != nil {
				l.failed.Add(1)
				level := slog.LevelDebug
				if errors.Is(err, ErrBadCallback) {
					level = slog.LevelWarn
				}
				l.opts.logger.Log(l.ctx, level, "bad connect event", slog.String("name", l.name),
					slog.String("relay", from.String()), slog.Any("err", err))
				continue
			}
			select {
			case l.sem <- struct{}{}:
			case <-l.closed:
				return net.ErrClosed
			}
			l.wg.Add(1)
			counted := !drained // settle may be waiting once drained
			if counted {
				st.calls.Add(1)
			}
			go l.callback(ce, target, st, counted)
		case wire.EventDrain:
			// The relay is going away. It ends the stream itself once the
			// dials already sent here have been called back; keep reading
			// until then. The slot registers elsewhere meanwhile, when
			// there is another relay; parking here is over.
			if !drained {
				drained = true
				st.stopPark()
				l.update(func(s *ListenerState) { s.Relays[st.relay].Draining = true })
				close(st.drained)
			}
		}
		// Other events are for newer listeners: passed over.
	}
}

// parseConnect decodes and checks a connect event's data from relay from,
// and returns the relay to call back: from itself for a relative callback
// (wire.PathAccept+token), or the host of an absolute one, which must be
// from's scheme and that path exactly. Anything else is ErrBadCallback.
func parseConnect(data []byte, from relay) (wire.ConnectEvent, relay, error) {
	var ce wire.ConnectEvent
	if err := wire.DecodeEvent(data, &ce); err != nil {
		return ce, relay{}, err
	}
	if _, err := wire.ParseToken(ce.Token); err != nil {
		return ce, relay{}, fmt.Errorf("%w: connect: %v", wire.ErrBadEvent, err)
	}
	path := wire.PathAccept + ce.Token
	if ce.Callback == path {
		return ce, from, nil
	}
	bad := func(why string) (wire.ConnectEvent, relay, error) {
		return ce, relay{}, fmt.Errorf("%w %q: %s", ErrBadCallback, ce.Callback, why)
	}
	u, err := url.Parse(ce.Callback)
	if err != nil || !u.IsAbs() {
		return bad("want " + path + " or an absolute URL with that path")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("scheme, want http or https")
	}
	if (u.Scheme == "https") != from.useTLS {
		return bad("scheme differs from the relay's " + from.String())
	}
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		u.RawFragment != "" || u.RawPath != "" || u.Path != path {
		return bad("want " + u.Scheme + "://host:port" + path)
	}
	port := u.Port()
	if port == "" {
		return bad("no port")
	}
	if why := checkHostPort(u.Hostname(), port); why != "" {
		return bad(why)
	}
	// The URL is parsed once: the relay is built from its parts.
	return ce, relay{host: net.JoinHostPort(u.Hostname(), port), useTLS: u.Scheme == "https"}, nil
}

// callback answers one connect event: a new connection to target (the
// relay that sent it, or the absolute callback's), the token with the
// registration id of the stream st that carried it (leaving st.calls once
// the relay has answered, when counted there), the 101, the TLS
// handshake on an MTLS listener (holding its worker slot), and the conn
// into the accept queue. Its failure is counted and logged, never
// returned.
func (l *Listener) callback(ce wire.ConnectEvent, target relay, st *stream, counted bool) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshake)
	c, err := l.serverConn(ctx, target, "accept", wire.PathAccept+ce.Token, st.regID)
	cancel()
	if counted {
		st.calls.Done()
	}
	if err != nil {
		if l.ctx.Err() == nil {
			l.failed.Add(1)
			l.opts.logger.Debug("callback failed", slog.String("name", l.name),
				slog.String("relay", target.String()), slog.Any("err", err))
		}
		return
	}
	l.deliver(c)
}

// deliver hands c to Accept, after the TLS server handshake on an MTLS
// listener (bounded by the handshake timeout; a failure is counted and
// dropped). It reports false when the listener closed first.
func (l *Listener) deliver(c *Conn) bool {
	var out net.Conn = c
	if l.tls != nil {
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.handshake)
		tc := tls.Server(c, l.tls)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			if l.ctx.Err() != nil {
				return false
			}
			l.failed.Add(1)
			l.opts.logger.Debug("mtls handshake failed", slog.String("name", l.name),
				slog.String("client", c.RemoteAddr().String()), slog.Any("err", err))
			return true
		}
		out = tc
	}
	select {
	case l.accepted <- out:
		return true
	case <-l.closed:
		c.Close()
		return false
	}
}

// closeRaw closes an accepted conn that nobody took: its socket, without
// a TLS close_notify that could block on a peer that reads nothing.
func closeRaw(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.Close()
}

// serverConn makes one server-side connection through the relay: a new
// connection, a callback request (accept or park) on path with the
// registration id, and its 101, which carries the client's name and
// address. ctx bounds it all.
func (l *Listener) serverConn(ctx context.Context, r relay, op, path, regID string) (*Conn, error) {
	conn, err := r.connect(ctx, &l.opts, l.network)
	if err != nil {
		return nil, err
	}
	u, err := upgradeExchange(ctx, conn, r, op, l.name, path, wire.HeaderRegistration, regID)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var remote net.Addr
	if ap, err := netip.ParseAddrPort(u.clientAddr); err == nil {
		remote = net.TCPAddrFromAddrPort(ap)
	}
	return newConn(conn, u.head, remote, l.name, u.clientName), nil
}

// idleConn is the stream's socket. Once idle is set, every read pushes the
// read deadline out by idle, so that any byte, heartbeat comments included,
// proves the link alive, and three missed heartbeats end the stream.
type idleConn struct {
	net.Conn
	idle atomic.Int64 // time.Duration; 0 leaves deadlines alone
}

func (c *idleConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
}

// startParking keeps opts.warmPool callbacks parked at the relay for st's
// registration until st ends (WithWarmPool).
func (l *Listener) startParking(st *stream) {
	for range l.opts.warmPool {
		l.wg.Add(1)
		go l.parker(st)
	}
}

// parker keeps one callback parked for st's registration: it parks, hands
// the connection a dial brings to Accept, and parks again, until st ends.
// A park the relay times out (204) or whose dial ended meanwhile (410) is
// renewed at once; a refusal for lack of room (429: the relay's per-
// registration cap is below the pool size; 503) or a failed connection is
// retried with the listener's backoff; an unknown registration (404) means
// st has ended, and the next stream starts new parkers.
func (l *Listener) parker(st *stream) {
	defer l.wg.Done()
	backoff := l.opts.backoffMin
	for st.parkCtx.Err() == nil {
		c, err := l.serverConn(st.parkCtx, l.relays[st.relay], "park", wire.PathPark+l.name, st.regID)
		if err == nil {
			backoff = l.opts.backoffMin
			if !l.deliver(c) {
				return
			}
			continue
		}
		if st.parkCtx.Err() != nil {
			return
		}
		var re *RelayError
		if errors.As(err, &re) {
			switch re.Status {
			case http.StatusNoContent, http.StatusGone:
				continue
			case http.StatusNotFound:
				return
			}
		}
		l.opts.logger.Debug("park failed", slog.String("name", l.name), slog.Any("err", err))
		select {
		case <-time.After(jitter(backoff)):
		case <-st.parkCtx.Done():
			return
		}
		backoff = min(2*backoff, l.opts.backoffMax)
	}
}
