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
// It holds no pipe and no buffer while it waits: the goroutine parks in
// Go's poller, and the read deadline of the conn applies.
func queued(rc syscall.RawConn) (int64, error) {
	var avail int64
	var opErr error
	err := rc.Read(func(fd uintptr) bool {
		var n int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
			opErr = errno
			return true
		}
		if n > 0 {
			avail = int64(n)
			return true
		}
		// Nothing queued: the peer has ended (a peek reads 0), failed (a
		// peek fails), or has not sent yet (EAGAIN: wait for the poller).
		// A wakeup can be stale, so only the peek decides.
		var probe [1]byte
		k, _, perr := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case perr == syscall.EAGAIN || perr == syscall.EINTR:
			return false
		case perr != nil:
			opErr = perr
		case k > 0:
			avail = int64(k) // bytes arrived since the ioctl
		}
		return true
	})
	if err == nil && opErr != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", opErr)}
	}
	return avail, err
}
