package gfsession

import (
	"io/fs"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// touchFile sets the access and modification times of the open file `f`
// (found at `path`, which only names it in errors) to `t`. It acts on the
// descriptor, as futimens(3) does (utimensat with no path): whatever is at
// `path` now, such as a symbolic link renamed there since `f` was opened, is
// never touched, and no /proc is needed.
func touchFile(f *os.File, path string, t time.Time) error {
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	ts := [2]syscall.Timespec{syscall.NsecToTimespec(t.UnixNano()), syscall.NsecToTimespec(t.UnixNano())}
	var errno syscall.Errno
	if err = c.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &fs.PathError{Op: "utimensat", Path: path, Err: errno}
	}
	return nil
}
