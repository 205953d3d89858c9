package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
)

// The service is declared by hand, without protoc: its messages are raw
// bytes carried by rawCodec. A real service would use generated protobuf
// code; the relay neither knows nor cares, since it splices the bytes of
// the HTTP/2 connection gRPC runs over.

// serviceName is the gRPC service the example serves.
const serviceName = "relayexample.Echo"

// rawCodec marshals *[]byte messages as themselves.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: marshal %T, want *[]byte", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: unmarshal into %T, want *[]byte", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

// echoServer answers Say with "echo: " and the request, and echoes each
// message of a Chat stream the same way until the client ends it.
type echoServer struct{}

func (echoServer) say(_ context.Context, req []byte) []byte {
	return append([]byte("echo: "), req...)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Say",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req []byte
			if err := dec(&req); err != nil {
				return nil, err
			}
			out := srv.(echoServer).say(ctx, req)
			return &out, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			for {
				var msg []byte
				if err := stream.RecvMsg(&msg); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				out := srv.(echoServer).say(stream.Context(), msg)
				if err := stream.SendMsg(&out); err != nil {
					return err
				}
			}
		},
	}},
}

// newServer returns a gRPC server with the echo service, using rawCodec.
func newServer(opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}))...)
	s.RegisterService(&serviceDesc, echoServer{})
	return s
}

// say calls the unary method.
func say(ctx context.Context, cc *grpc.ClientConn, msg string) (string, error) {
	in, out := []byte(msg), []byte(nil)
	if err := cc.Invoke(ctx, "/"+serviceName+"/Say", &in, &out, grpc.ForceCodec(rawCodec{})); err != nil {
		return "", fmt.Errorf("grpc example: Say: %w", err)
	}
	return string(out), nil
}

// chat sends each of msgs on one Chat stream and returns the replies.
func chat(ctx context.Context, cc *grpc.ClientConn, msgs []string) ([]string, error) {
	desc := &serviceDesc.Streams[0]
	st, err := cc.NewStream(ctx, desc, "/"+serviceName+"/Chat", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return nil, fmt.Errorf("grpc example: Chat: %w", err)
	}
	var replies []string
	for _, m := range msgs {
		in := []byte(m)
		if err := st.SendMsg(&in); err != nil {
			return replies, fmt.Errorf("grpc example: Chat: send: %w", err)
		}
		var out []byte
		if err := st.RecvMsg(&out); err != nil {
			return replies, fmt.Errorf("grpc example: Chat: receive: %w", err)
		}
		replies = append(replies, string(out))
	}
	if err := st.CloseSend(); err != nil {
		return replies, fmt.Errorf("grpc example: Chat: close: %w", err)
	}
	var extra []byte
	if err := st.RecvMsg(&extra); !errors.Is(err, io.EOF) {
		return replies, fmt.Errorf("grpc example: Chat: end of stream: %v, want EOF", err)
	}
	return replies, nil
}
