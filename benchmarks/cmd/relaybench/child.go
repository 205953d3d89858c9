package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
)

// Environment of a child process of the spawn mode. childEnv names the
// role; the others are the role's inputs.
const (
	childEnv         = "RELAYBENCH_CHILD"          // "servers" or "proxy"
	childRelayEnv    = "RELAYBENCH_CHILD_RELAY"    // servers: the relay's address
	childPrefixEnv   = "RELAYBENCH_CHILD_PREFIX"   // servers: prefix of the names to register
	childWarmEnv     = "RELAYBENCH_CHILD_WARM"     // servers: warm pool size of the warm name
	childUpstreamEnv = "RELAYBENCH_CHILD_UPSTREAM" // proxy: "echo-addr,sink-addr"
)

// Roles of a child process.
const (
	roleServers = "servers" // echo and sink over TCP, and registered on the relay
	roleProxy   = "proxy"   // bare splice proxies to the servers' echo and sink
)

// childStartTimeout bounds how long a child may take to report ready.
const childStartTimeout = 30 * time.Second

// runChild runs this process as a child of the spawn mode in role, until
// its stdin closes (the parent ended or let it go). It prints one line
// "ready key=value ..." on stdout once it serves. It returns the exit
// code.
func runChild(role string, stdin io.Reader, stdout, stderr io.Writer) int {
	if err := child(role, stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "relaybench %s child: %v\n", role, err)
		return 1
	}
	return 0
}

// child starts the role's servers, reports ready and serves until stdin
// closes.
func child(role string, stdin io.Reader, stdout io.Writer) error {
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.close()
		}
	}()
	var ready string
	switch role {
	case roleServers:
		relay, prefix := os.Getenv(childRelayEnv), os.Getenv(childPrefixEnv)
		warm, err := strconv.Atoi(os.Getenv(childWarmEnv))
		if relay == "" || prefix == "" || err != nil {
			return fmt.Errorf("servers child: want %s, %s and a numeric %s", childRelayEnv, childPrefixEnv, childWarmEnv)
		}
		echo, err := listenTCP(echoConn)
		if err != nil {
			return fmt.Errorf("start echo server: %w", err)
		}
		servers = append(servers, echo)
		sink, err := listenTCP(sinkConn)
		if err != nil {
			return fmt.Errorf("start sink server: %w", err)
		}
		servers = append(servers, sink)
		ctx, cancel := context.WithTimeout(context.Background(), childStartTimeout)
		defer cancel()
		for _, reg := range []struct {
			name   string
			handle func(net.Conn)
			opts   []endpoints.Option
		}{
			{"echo", echoConn, nil},
			{"echo-warm", echoConn, []endpoints.Option{endpoints.WithWarmPool(warm)}},
			{"sink", sinkConn, nil},
		} {
			s, err := listenRelay(ctx, relay, prefix+"-"+reg.name, reg.handle, reg.opts...)
			if err != nil {
				return err
			}
			servers = append(servers, s)
		}
		ready = fmt.Sprintf("echo=%s sink=%s", echo.addr(), sink.addr())
	case roleProxy:
		up := strings.Split(os.Getenv(childUpstreamEnv), ",")
		if len(up) != 2 {
			return fmt.Errorf("proxy child: want %s=echo-addr,sink-addr", childUpstreamEnv)
		}
		echo, err := listenTCP(spliceTo(up[0]))
		if err != nil {
			return fmt.Errorf("start echo proxy: %w", err)
		}
		servers = append(servers, echo)
		sink, err := listenTCP(spliceTo(up[1]))
		if err != nil {
			return fmt.Errorf("start sink proxy: %w", err)
		}
		servers = append(servers, sink)
		ready = fmt.Sprintf("echo=%s sink=%s", echo.addr(), sink.addr())
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	if _, err := fmt.Fprintf(stdout, "ready %s\n", ready); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	// Serve until the parent closes stdin; what it writes is ignored.
	if _, err := io.Copy(io.Discard, stdin); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	for _, s := range servers {
		if err := s.err(); err != nil {
			return fmt.Errorf("server %s stopped accepting: %w", s.addr(), err)
		}
	}
	return nil
}

// parseReady parses a child's "ready key=value ..." line.
func parseReady(line string) (map[string]string, error) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ready" {
		return nil, fmt.Errorf("child said %q, want a ready line", line)
	}
	kv := map[string]string{}
	for _, p := range f[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("child ready line %q: field %q is not key=value", line, p)
		}
		kv[k] = v
	}
	return kv, nil
}

// readLine reads one line from r within d.
func readLine(r *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			return x.s, fmt.Errorf("read child's ready line: %w", x.err)
		}
		return x.s, nil
	case <-time.After(d):
		return "", errors.New("child did not report ready in time")
	}
}
