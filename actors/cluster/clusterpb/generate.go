// Package clusterpb holds the protobuf control messages between relay
// nodes (cluster.proto): Notify, its NotifyReply, and Cancel. The
// generated code is committed.
package clusterpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative cluster.proto
