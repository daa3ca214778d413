//go:build unix && !linux && !solaris && !aix

package gfsession

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// touchFile sets the access and modification times of the open file `f`
// (found at `path`, which only names it in errors) to `t`, with futimes(2)
// on the descriptor: whatever is at `path` now, such as a symbolic link
// renamed there since `f` was opened, is never touched.
func touchFile(f *os.File, path string, t time.Time) error {
	c, err := f.SyscallConn()
	if err != nil {
		return err
	}
	tv := []syscall.Timeval{syscall.NsecToTimeval(t.UnixNano()), syscall.NsecToTimeval(t.UnixNano())}
	var serr error
	if err = c.Control(func(fd uintptr) { serr = syscall.Futimes(int(fd), tv) }); err != nil {
		return err
	}
	if serr != nil {
		return &fs.PathError{Op: "futimes", Path: path, Err: serr}
	}
	return nil
}
