package clusterproc

import (
	"os/exec"
	"syscall"
)

// orphanKill makes the kernel kill cmd's process when the test binary
// dies, so that no process outlives a crashed or killed test run.
func orphanKill(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
