package actors

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// spliceSupported says raw TCP pairs copy with splice(2) on this system.
const spliceSupported = true

// queued waits until the socket behind rc has bytes to read or has ended,
// and returns the number of bytes queued: 0 means the peer sent its FIN.
// urgent reports bytes that splice(2) cannot pass: TCP urgent data ahead,
// which TIOCINQ does not count. It holds no pipe and no buffer while it
// waits: the goroutine parks in Go's poller, and the read deadline of the
// conn applies.
func queued(rc syscall.RawConn) (avail int64, urgent bool, err error) {
	var opErr error
	err = rc.Read(func(fd uintptr) bool {
		n, errno := inq(fd)
		if errno != 0 {
			opErr = errno
			return true
		}
		if n > 0 {
			avail = int64(n)
			return true
		}
		// Nothing counted: the peer has ended (a peek reads 0), failed (a
		// peek fails), has not sent yet (EAGAIN: wait for the poller), or
		// sent urgent data (a peek reads bytes TIOCINQ does not count). A
		// wakeup can be stale, so only the peek decides.
		var probe [1]byte
		k, _, perr := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case perr == syscall.EAGAIN || perr == syscall.EINTR:
			return false
		case perr != nil:
			opErr = perr
		case k > 0:
			// Bytes arrived since the count, or an urgent mark is ahead.
			if n, errno := inq(fd); errno == 0 && n > 0 {
				avail = int64(n)
			} else {
				urgent = true
			}
		}
		return true
	})
	if err == nil && opErr != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", opErr)}
	}
	return avail, urgent, err
}

// inq returns the bytes queued on socket fd, up to any urgent mark.
func inq(fd uintptr) (int32, syscall.Errno) {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	return n, errno
}
