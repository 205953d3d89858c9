package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/clusterlink-relay/relay/wire"
)

// Messages between the engine's actors. Each request carries a reply
// channel of capacity 1, so the replying actor never blocks; the requester
// waits on it with a bound. No message carries a net.Conn.

// quiet marks a message whose dead letter is expected and not worth a log
// line: every message here is sent to actors that may have just stopped.
type quiet struct{}

func (quiet) IgnoreDeadLetterLogging() {}

var _ actor.IgnoreDeadLetterLogging = quiet{}

// expectMsg tells the directory that a registration of name with id is
// being published to the cluster: Notifies other nodes send for it before
// its registerMsg arrives wait for it instead of being refused. done says
// the registration will not come (the publish failed).
type expectMsg struct {
	quiet
	name string
	id   wire.Token
	done bool
}

// registerMsg asks the directory for a new registration of name.
type registerMsg struct {
	quiet
	req   RegisterRequest
	reply chan registerReply
}

type registerReply struct {
	reg *Registration
	err error
}

// closeMsg tells a listener its registration has ended: refuse new
// callbacks, retire the pending children (by Poison, so callbacks already
// forwarded to them are answered first), and stop once they are gone.
type closeMsg struct{ quiet }

// unregisterMsg ends a registration. Sent to the directory.
type unregisterMsg struct {
	quiet
	listener *actor.PID
}

// dialMsg asks for a connection to name. The directory mints the token and
// forwards it to the listener.
type dialMsg struct {
	quiet
	name       string
	clientName string
	clientAddr string
	token      wire.Token
	reply      chan dialReply

	// Set by a clustered engine: the picked member's registration id,
	// and for another node's member, that node.
	registration wire.Token
	remote       *remoteTarget
}

type dialReply struct {
	pending *PendingDial
	err     error
}

// callbackMsg presents a callback token. Routed directory → listener →
// pending.
type callbackMsg struct {
	quiet
	token        wire.Token
	registration wire.Token
	reply        chan callbackReply
}

type callbackReply struct {
	pairing *Pairing
	err     error
}

// cancelMsg tells a pending actor its client went away.
type cancelMsg struct{ quiet }

// expireMsg is a pending actor's deadline, sent by its own timer.
type expireMsg struct{ quiet }

// pendingDoneMsg tells the listener that a pending child has sent its
// outcome: forget its token and poison it.
type pendingDoneMsg struct {
	quiet
	token wire.Token
}

// tokenDoneMsg tells the directory a token is finished: drop its route and
// keep a tombstone.
type tokenDoneMsg struct {
	quiet
	token wire.Token
}

// drainMsg asks every listener to send a drain event; the directory refuses
// new work afterwards.
type drainMsg struct {
	quiet
	reason string
	reply  chan int // optional: the number of registrations told
}

// copyDoneMsg reports the end of one direction of a pair.
type copyDoneMsg struct {
	quiet
	dir int
	n   int64
	err error
}

// snapshotMsg asks the directory for every live registration.
type snapshotMsg struct {
	quiet
	reply chan []RegistrationInfo
}
