package endpoints

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors. Their text carries no package prefix: the API
// functions wrap them once as `endpoints: OP "NAME": …`.
var (
	// ErrUnsupportedNetwork is returned for a network other than "tcp",
	// "tcp4" or "tcp6".
	ErrUnsupportedNetwork = errors.New("unsupported network")
	// ErrBadRelayAddress is returned for a relay address that is not
	// host:port, http://host:port or https://host:port, with a host and a
	// numeric port from 1 to 65535. The error names the input.
	ErrBadRelayAddress = errors.New("bad relay address")
	// ErrNotRelay is returned when the server at the relay address answers
	// HTTP but not as a relay: its response lacks the Relay-Node header
	// that a relay sets on every response (wire.HeaderNode). It is not a
	// *RelayError: the status is the other server's, not a refusal.
	ErrNotRelay = errors.New("not a relay (no Relay-Node header in the answer)")
	// ErrProtocol is returned when the relay's answer breaks the protocol.
	ErrProtocol = errors.New("protocol error")
	// ErrNoTLSConfig is returned by the MTLS dialers and listeners for a
	// nil *tls.Config.
	ErrNoTLSConfig = errors.New("nil tls.Config")
	// ErrNoCertificate is returned by the MTLS listeners for a config with
	// no certificate source (Certificates, GetCertificate or
	// GetConfigForClient).
	ErrNoCertificate = errors.New("tls.Config has no certificate (set Certificates or GetCertificate)")
	// ErrNoClientCAs is returned by the MTLS listeners for a mutual config
	// (ClientAuth left zero) with no ClientCAs to verify clients against.
	ErrNoClientCAs = errors.New("mutual TLS needs ClientCAs (or set ClientAuth explicitly)")
	// ErrBadRedundancy is returned by Listen for WithRedundancy(n) with
	// n < 1.
	ErrBadRedundancy = errors.New("bad redundancy (WithRedundancy wants 1 or more)")
	// ErrBadCallback is why a connect event whose callback is refused
	// counts in Listener.Failed: not PathAccept+token, relative or as an
	// absolute URL of the registration's scheme (see Listener).
	ErrBadCallback = errors.New("bad callback in connect event")
	// ErrStreamEnded is recorded in ListenerState.LastError when a
	// registration stream ends (a drain, a relay restart, a link found
	// dead). The listener then re-registers; Accept does not return it.
	ErrStreamEnded = errors.New("registration stream ended")
)

// RelayError is the relay's refusal of a request: its HTTP status and the
// short reason from its body. Callers branch on Status: 404 unknown name,
// 409 name taken, 503 busy or draining, 504 the server did not call back.
type RelayError struct {
	// Op is the refused operation: "listen", "dial" or "accept".
	Op string
	// Name is the server name (or, for accept, empty).
	Name string
	// Status is the HTTP status code.
	Status int
	// Reason is the relay's text, at most wire.MaxReasonLen bytes.
	Reason string
}

// Error returns "relay refused: STATUS REASON". The API functions wrap it
// once with the operation and name: `endpoints: dial "echo": relay
// refused: 404 unknown name`.
func (e *RelayError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = http.StatusText(e.Status)
	}
	return fmt.Sprintf("relay refused: %d %s", e.Status, reason)
}

// Timeout reports whether the refusal is the relay's 504: the server did
// not call back in time.
func (e *RelayError) Timeout() bool { return e.Status == http.StatusGatewayTimeout }

// Temporary reports whether trying again later may succeed (5xx and 429).
func (e *RelayError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests
}
