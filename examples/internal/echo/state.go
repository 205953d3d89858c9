package echo

import (
	"log/slog"

	"github.com/clusterlink-relay/relay/endpoints"
)

// LogState returns an option that logs each change of a relay listener's
// registration: one line when the stream is lost (with why), and one when
// the listener has registered again by itself, with its count of
// re-registrations. The first registration is logged by the caller.
func LogState(log *slog.Logger) endpoints.Option {
	return endpoints.WithStateFunc(func(s endpoints.ListenerState) {
		switch {
		case s.Connected && s.Reconnects > 0:
			log.Info("re-registered", slog.Int("reconnects", s.Reconnects))
		case !s.Connected:
			log.Warn("registration lost; re-registering", slog.Any("err", s.LastError))
		}
	})
}
