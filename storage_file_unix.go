//go:build unix

package gfsession

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

// openFlagsNoFollow are added to every open of a file or folder inside the
// session folder: a symbolic link is not followed (the open fails), and
// opening a named pipe does not wait for a writer (fstat then tells it
// apart from a regular file).
const openFlagsNoFollow = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// openNoFollow opens `path` with `flag` and `perm` as os.OpenFile does, but
// never through a symbolic link and never blocking on a special file. A
// symbolic link at `path` is a *refusedFileError.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|openFlagsNoFollow, perm)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// O_NOFOLLOW fails with ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on
		// NetBSD: ask the folder what the entry is instead.
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, refusedFile(fi, 0)
		}
	}
	return f, err
}

// checkFolderOwner refuses a session folder that another user could write
// or that belongs to another user: whoever can write the folder can plant
// a session file (without CryptoKeys, one that logs them in as anyone) or
// delete sessions. The default folder is in the shared temporary folder,
// where another user could have made it first.
func checkFolderOwner(dir string, fi os.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`path: session folder %q belongs to user id %d, not to this process's user (%d): choose a folder of the application's own`,
			dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`path: session folder %q is writable by other users (mode %04o), who could forge or delete sessions: make it 0700 (chmod 700 %q) or choose another folder`,
			dir, perm, dir)
	}
	return nil
}
