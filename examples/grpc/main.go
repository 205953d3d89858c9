// Command grpc serves and calls a gRPC service through the relay: the
// server registers a name with endpoints.ListenRelay and hands the
// listener to grpc.Server.Serve; the client dials the name with
// grpc.WithContextDialer.
//
// The target must be "passthrough:///NAME". grpc.NewClient's default
// resolver is DNS, which finds no address for a relay name and fails with
// "produced zero addresses"; passthrough hands NAME unchanged to the
// dialer, which asks the relay for it.
//
//	go run ./relaynode/cmd/relaynode &
//	cd examples/grpc
//	go run . -mode server -relay http://127.0.0.1:8080 -name greeter &
//	go run . -mode client -relay 127.0.0.1:8080 -name greeter -msg hello
//
// It lives in its own module so that gRPC is not a dependency of the
// relay's module: library users who do not use gRPC never download it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/clusterlink-relay/relay/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	mode := flag.String("mode", "client", "server or client")
	relay := flag.String("relay", "http://127.0.0.1:8080", "the relay: a URL for the server, host:port for the client")
	name := flag.String("name", "greeter", "the name the server registers and the client dials")
	msg := flag.String("msg", "hello", "the client's message")
	timeout := flag.Duration("timeout", 10*time.Second, "the client's deadline for both calls")
	flag.Parse()
	log.SetFlags(0)
	switch *mode {
	case "server":
		ln, err := endpoints.ListenRelay("tcp", *name, *relay)
		if err != nil {
			log.Fatalf("grpc server: %v", err)
		}
		s := newServer()
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt)
			<-sig
			s.GracefulStop()
		}()
		log.Printf("serving gRPC as %q on %s", *name, *relay)
		if err := s.Serve(ln); err != nil {
			log.Fatalf("grpc server: %v", err)
		}
	case "client":
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		cc, err := dialRelay(*relay, *name, endpoints.NewRelayDialer(*relay, "grpc-client").DialContext, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatalf("grpc client: %v", err)
		}
		defer cc.Close()
		reply, err := say(ctx, cc, *msg)
		if err != nil {
			log.Fatalf("grpc client: %v", err)
		}
		fmt.Println(reply)
		replies, err := chat(ctx, cc, []string{*msg + " 1", *msg + " 2"})
		if err != nil {
			log.Fatalf("grpc client: %v", err)
		}
		for _, r := range replies {
			fmt.Println(r)
		}
	default:
		log.Fatalf("grpc: -mode %q: want server or client", *mode)
	}
}

// dialFunc dials a relay name, as endpoints' dialers do.
type dialFunc func(ctx context.Context, network, name string) (net.Conn, error)

// dialRelay returns a gRPC client for the server registered as name,
// whose connections dial makes through the relay.
func dialRelay(relay, name string, dial dialFunc, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
		return dial(ctx, "tcp", target)
	}))
	cc, err := grpc.NewClient("passthrough:///"+name, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %q through %s: %w", name, relay, err)
	}
	return cc, nil
}
