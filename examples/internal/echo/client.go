package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/clusterlink-relay/relay/endpoints"
)

// Exchange sends msg on c, half-closes c, and returns what it reads until
// EOF: the echo, which the server sends before half-closing in turn. If
// ctx has a deadline it becomes c's deadline. It does not close c, and
// does not compare the echo with msg.
func Exchange(ctx context.Context, c net.Conn, msg string) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	// Half-close (over TLS, a close_notify): the server reads EOF, echoes
	// everything, and half-closes in turn, which ends our read below.
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil, fmt.Errorf("%T cannot half-close", c)
	}
	if err := cw.CloseWrite(); err != nil {
		return nil, fmt.Errorf("close write: %w", err)
	}
	echo, err := io.ReadAll(c)
	if err != nil {
		return nil, fmt.Errorf("read echo: %w", err)
	}
	return echo, nil
}

// Check returns an error unless got, the echo, is msg byte for byte.
func Check(msg string, got []byte) error {
	if string(got) != msg {
		return fmt.Errorf("echo mismatch: sent %d bytes %q, got %d bytes %q", len(msg), msg, len(got), got)
	}
	return nil
}

// Exit prints err on stderr, prefixed by prog, and exits 1. For an
// *endpoints.RelayError (a refusal from the relay, such as 404 for a
// name nobody has registered) the line names the relay's HTTP status.
func Exit(prog string, err error) {
	var re *endpoints.RelayError
	if errors.As(err, &re) {
		fmt.Fprintf(os.Stderr, "%s: relay status %d: %v\n", prog, re.Status, err)
	} else {
		fmt.Fprintln(os.Stderr, prog+":", err)
	}
	os.Exit(1)
}
