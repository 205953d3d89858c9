package wire

import "errors"

// Sentinel errors returned by the parsers in this package. Callers match
// them with errors.Is; the returned errors wrap them with detail.
var (
	// ErrLineTooLong is returned by the SSE reader for a line longer than
	// its line limit.
	ErrLineTooLong = errors.New("wire: sse line too long")
	// ErrEventTooLarge is returned by the SSE reader when one event's data
	// exceeds its event limit.
	ErrEventTooLarge = errors.New("wire: sse event too large")
	// ErrBadToken is returned by ParseToken for anything that is not a
	// canonical token.
	ErrBadToken = errors.New("wire: malformed token")
	// ErrBadName is returned by CheckName for an empty, oversized or
	// badly formed name.
	ErrBadName = errors.New("wire: invalid name")
	// ErrBadEvent is returned when an event's data does not decode into the
	// event's type or misses a required field.
	ErrBadEvent = errors.New("wire: malformed event")
)
