package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// Serve accepts connections on ln and echoes each one back to its sender
// until SIGINT or SIGTERM, which closes ln. It logs "accepted" with the
// attributes describe returns for each connection, and "echoed" or "echo
// failed" when the connection ends.
//
// Serve returns nil once ln is closed, after it has closed the connections
// in flight and waited for their goroutines. Failed callbacks, handshakes
// and lost streams never reach Accept (a relay listener re-registers by
// itself): any other Accept error is a permanent refusal, such as the
// name taken by someone else, and Serve returns it wrapped as "accept: …".
// The caller still owns ln and closes it; closing it twice is safe.
func Serve(log *slog.Logger, ln net.Listener, describe func(net.Conn) []slog.Attr) error {
	// The signal handler owns the shutdown: it closes the listener, which
	// ends Accept with net.ErrClosed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	done := make(chan struct{}) // closed when the signal handler has returned
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			log.Info("stopping", slog.String("signal", s.String()))
			ln.Close()
		case <-stop:
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()

	var live conns
	defer live.closeAndWait()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, "accepted", describe(c)...)
		live.run(c, func() { echo(log, c) })
	}
}

// echo copies c back to itself until the client half-closes (over TLS, a
// close_notify), then half-closes in turn so that the client reads EOF
// after the echo.
func echo(log *slog.Logger, c net.Conn) {
	defer c.Close()
	n, err := io.Copy(c, c)
	if err != nil {
		log.Warn("echo failed", slog.String("remote", c.RemoteAddr().String()), slog.Any("err", err))
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	log.Info("echoed", slog.String("remote", c.RemoteAddr().String()), slog.Int64("bytes", n))
}
