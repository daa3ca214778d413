//go:build !linux

package main

import "syscall"

// procAttr puts redis-server in its own process group.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
