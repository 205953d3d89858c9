package endpoints

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors.
var (
	// ErrUnsupportedNetwork is returned for a network other than "tcp",
	// "tcp4" or "tcp6".
	ErrUnsupportedNetwork = errors.New("endpoints: unsupported network")
	// ErrBadRelayAddress is returned for a relay address that is not
	// host:port, http://host:port or https://host:port.
	ErrBadRelayAddress = errors.New("endpoints: bad relay address")
	// ErrProtocol is returned when the relay's answer breaks the protocol.
	ErrProtocol = errors.New("endpoints: protocol error")
	// ErrNoTLSConfig is returned by the MTLS dialers and listeners for a
	// nil *tls.Config.
	ErrNoTLSConfig = errors.New("endpoints: nil tls.Config")
	// ErrNoCertificate is returned by the MTLS listeners for a config with
	// no certificate source (Certificates, GetCertificate or
	// GetConfigForClient), and for a mutual config with no ClientCAs.
	ErrNoCertificate = errors.New("endpoints: tls.Config has no certificate")
	// ErrStreamEnded is recorded in ListenerState.LastError when a
	// registration stream ends (a drain, a relay restart, a link found
	// dead). The listener then re-registers; Accept does not return it.
	ErrStreamEnded = errors.New("endpoints: registration stream ended")
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
