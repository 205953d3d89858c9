//go:build !linux

package procs

import "os/exec"

// orphanKill does nothing off Linux: the starter's cleanup alone ends
// the processes.
func orphanKill(*exec.Cmd) {}
