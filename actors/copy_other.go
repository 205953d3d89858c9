//go:build !linux

package actors

import (
	"errors"
	"syscall"
)

// spliceSupported says raw TCP pairs copy with splice(2) on this system:
// only Linux has it, so spliceable is false and spliceLoop is never reached.
const spliceSupported = false

// queued is only reached through spliceLoop, which needs Linux.
func queued(syscall.RawConn) (int64, error) { return 0, errors.ErrUnsupported }
