package actors

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrClosed is returned by Engine methods after Close.
var ErrClosed = errors.New("actors: engine closed")

// Refusal is the engine's answer to a request it does not serve. Status is
// the HTTP status the relay sends and Reason its short text body.
type Refusal struct {
	Status int
	Reason string
}

// Error returns "actors: STATUS REASON".
func (r *Refusal) Error() string {
	return fmt.Sprintf("actors: %d %s", r.Status, r.Reason)
}

// The refusals the engine gives. They are shared values: compare Status,
// not pointers.
var (
	refuseDraining       = &Refusal{http.StatusServiceUnavailable, "relay draining"}
	refuseNameTaken      = &Refusal{http.StatusConflict, "name already registered"}
	refuseUnknownName    = &Refusal{http.StatusNotFound, "unknown name"}
	refuseQueueFull      = &Refusal{http.StatusServiceUnavailable, "listener queue full"}
	refuseTooManyPending = &Refusal{http.StatusServiceUnavailable, "too many pending dials"}
	refuseUnknownToken   = &Refusal{http.StatusNotFound, "unknown token"}
	refuseUsedToken      = &Refusal{http.StatusGone, "token used or expired"}
	refuseForeignToken   = &Refusal{http.StatusForbidden, "token belongs to another registration"}
	refuseTimeout        = &Refusal{http.StatusGatewayTimeout, "callback deadline passed"}
	refuseListenerGone   = &Refusal{http.StatusBadGateway, "registration ended"}
	refuseCancelled      = &Refusal{499, "dial cancelled"}
	refuseBusy           = &Refusal{http.StatusServiceUnavailable, "relay busy"}
	refuseInternal       = &Refusal{http.StatusInternalServerError, "internal error"}
)
