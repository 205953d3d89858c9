package procs

import (
	"os/exec"
	"syscall"
)

// orphanKill makes the kernel kill cmd's process when its starter dies,
// so that no process outlives a crashed or killed test run or bench.
func orphanKill(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
