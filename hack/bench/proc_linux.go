package main

import "syscall"

// procAttr puts redis-server in its own process group and has the kernel
// kill it if this program dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
