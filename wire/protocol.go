package wire

import (
	"fmt"
	"time"
)

// ProtocolVersion is the version of the protocol described in this package.
// See the changelog in the package documentation.
const ProtocolVersion = 1

// Routes. Each is a prefix followed by exactly one path segment: a name for
// listen, dial and park, a token for accept. All use the POST method.
const (
	// PathListen is the registration route: POST /v1/listen/{name}.
	// Success: 200 with Content-Type text/event-stream, held open.
	PathListen = "/v1/listen/"
	// PathDial is the client's route: POST /v1/dial/{name}, with the
	// Upgrade headers. Success: 101 Switching Protocols, then raw bytes.
	PathDial = "/v1/dial/"
	// PathAccept is the server's callback route: POST /v1/accept/{token},
	// with the Upgrade headers and HeaderRegistration. Success: 101, then
	// raw bytes.
	PathAccept = "/v1/accept/"
	// PathPark is the warm pool's route: POST /v1/park/{name}, with the
	// Upgrade headers and HeaderRegistration. The relay holds the request
	// until a dial is handed to it, then answers 101 with HeaderClientName
	// and HeaderClientAddr, then raw bytes; 204 when ParkTimeout passes
	// first (park again, on the same connection if you like).
	PathPark = "/v1/park/"
)

// Headers.
const (
	// UpgradeProtocol is the value of the Upgrade header on dial and accept
	// requests and on their 101 responses.
	UpgradeProtocol = "clusterlink-relay/1"
	// HeaderClientName carries the dialing client's self-chosen name: on
	// the dial request, and on the accept and park 101 responses to the
	// server.
	HeaderClientName = "Relay-Client-Name"
	// HeaderClientAddr carries the dialing client's address as host:port on
	// the accept and park 101 responses to the server.
	HeaderClientAddr = "Relay-Client-Addr"
	// HeaderRegistration carries a registration id from a ready event. On
	// accept and park requests it is required, and binds the callback to
	// its registration. On a listen request it is optional: it names the
	// sender's previous registration of the name, which the new one
	// replaces at once (a reconnect taking its name back).
	HeaderRegistration = "Relay-Registration"
	// HeaderNode carries the relay's node id on every response.
	HeaderNode = "Relay-Node"
	// ContentTypeEventStream is the Content-Type of a listen response.
	ContentTypeEventStream = "text/event-stream"
)

// Limits that both sides enforce.
const (
	// MaxNameLen is the longest server or client name, in bytes.
	MaxNameLen = 128
	// MaxReasonLen is the longest refusal body a reader needs to keep.
	MaxReasonLen = 512
	// DefaultMaxLine is the SSE reader's default line limit in bytes.
	DefaultMaxLine = 4096
	// DefaultMaxEvent is the SSE reader's default limit on one event's
	// accumulated data, in bytes.
	DefaultMaxEvent = 16 << 10
)

// CheckName reports whether s is a valid server or client name: 1 to
// MaxNameLen bytes of ASCII letters, digits, '.', '-' and '_', not starting
// with '.' or '-'. Names are compared byte for byte.
func CheckName(s string) error {
	if len(s) == 0 {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadName, len(s), MaxNameLen)
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Errorf("%w: leading %q", ErrBadName, s[0])
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return fmt.Errorf("%w: byte 0x%02x at %d", ErrBadName, s[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '-', c == '_':
		return true
	}
	return false
}

// Event types, the value of an SSE "event:" field.
const (
	// EventReady is the first event on every stream (ReadyEvent).
	EventReady = "ready"
	// EventConnect asks the server to call back for one dial (ConnectEvent).
	EventConnect = "connect"
	// EventDrain tells the server the relay is shutting down (DrainEvent).
	EventDrain = "drain"
)

// ReadyEvent is the data of the first event on a registration stream.
type ReadyEvent struct {
	// Node is the relay's node id.
	Node string `json:"node"`
	// Registration is the secret id the server presents on callbacks in
	// HeaderRegistration. It is a token: 128 bits, base64url.
	Registration string `json:"registration"`
	// HeartbeatMillis is the interval between heartbeat comments.
	HeartbeatMillis int64 `json:"heartbeat_ms"`
}

// Heartbeat returns the heartbeat interval as a duration.
func (e ReadyEvent) Heartbeat() time.Duration {
	return time.Duration(e.HeartbeatMillis) * time.Millisecond
}

// ConnectEvent is the data of a connect event: one pending dial.
type ConnectEvent struct {
	// Token is the single-use callback token.
	Token string `json:"token"`
	// Client is the dialing client's self-chosen name.
	Client string `json:"client"`
	// ClientAddr is the dialing client's address, host:port.
	ClientAddr string `json:"client_addr"`
	// Callback is the path to POST the callback to: PathAccept + Token.
	Callback string `json:"callback"`
	// DeadlineUnixMilli is when the relay stops waiting for the callback.
	DeadlineUnixMilli int64 `json:"deadline_ms"`
}

// DrainEvent is the data of a drain event.
type DrainEvent struct {
	// Reason is a short human-readable reason.
	Reason string `json:"reason"`
}
