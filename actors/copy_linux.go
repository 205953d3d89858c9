package actors

import (
	"net"
	"os"
	"syscall"
)

// spliceSupported says raw TCP pairs copy with splice(2) on this system.
const spliceSupported = true

// queued waits until the socket behind rc has bytes to read or has ended,
// and returns the number of bytes queued: 0 means the peer sent its FIN.
// One recvfrom(MSG_PEEK|MSG_TRUNC) counts them without copying any (and
// stops, as splice(2) does, at a TCP urgent mark; spliceLoop copies the
// rest through a buffer when a splice then moves nothing). It holds no
// pipe and no buffer while it waits: the goroutine parks in Go's poller,
// and the read deadline of the conn applies.
func queued(rc syscall.RawConn) (avail int64, err error) {
	var opErr syscall.Errno
	err = rc.Read(func(fd uintptr) bool {
		n, errno := peekCount(fd)
		switch errno {
		case 0:
			avail = int64(n)
			return true
		case syscall.EAGAIN, syscall.EINTR:
			// Nothing yet, or a stale wakeup: wait for the poller.
			return false
		default:
			opErr = errno
			return true
		}
	})
	if err == nil && opErr != 0 {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", opErr)}
	}
	return avail, err
}

// peekLimit is the most one count reports: far more than a socket buffers.
const peekLimit = 1 << 30

// peekCount returns the bytes queued on TCP socket fd, counted by a peek
// that copies none: with MSG_TRUNC, TCP returns the length it would have
// read. The buffer is nil, so a kernel that copied anyway would fail with
// EFAULT rather than write anywhere.
func peekCount(fd uintptr) (int, syscall.Errno) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, 0, peekLimit,
		syscall.MSG_PEEK|syscall.MSG_TRUNC|syscall.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}
