//go:build !unix || solaris || aix

package gfsession

import (
	"os"
	"time"
)

// touchFile sets the access and modification times of the file at `path`,
// open as `f`, to `t`. Here the syscall package sets times by path only:
// the open and the change are two steps, and a symbolic link renamed to
// `path` between them would be followed.
func touchFile(f *os.File, path string, t time.Time) error {
	return os.Chtimes(path, t, t)
}
