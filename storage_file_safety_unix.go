//go:build unix

package gfsession

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
//
// The error never suggests changing the mode of a folder that is not the
// application's own (one with the sticky bit, such as /tmp, one of another
// user, or a system folder such as / or $HOME): it says to choose a folder
// of the application's own.
func checkFolderOwner(dir string, fi os.FileInfo) error {
	const ownFolder = `choose a folder of the application's own instead, such as a new sub-folder, which the storage creates with mode 0700`
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`path: session folder %q belongs to user id %d, not to this process's user (%d): %s`,
			dir, st.Uid, os.Geteuid(), ownFolder)
	}
	if fi.Mode().Perm()&0o022 == 0 {
		return nil
	}
	if fi.Mode()&fs.ModeSticky != 0 || isSystemFolder(dir) {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`path: session folder %q is a shared or system folder, writable by other users (mode %s), who could forge or delete sessions: %s`,
			dir, unixMode(fi.Mode()), ownFolder)
	}
	return gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`path: session folder %q is writable by other users (mode %s), who could forge or delete sessions: make it 0700 (chmod 700 %q) or choose another folder`,
		dir, unixMode(fi.Mode()), dir)
}

// checkFolderParents refuses the session folder `dir` (absolute, symbolic
// links resolved) when one of its parent folders, up to the root, lets a
// user other than root and the process's user replace what it holds: a
// parent that belongs to another user, or that its group or others can
// write without the sticky bit. Whoever can do so can rename the session
// folder away and put a folder or a symbolic link of their own in its
// place, and the storage, which opens its files by path, would then read
// the sessions they planted. The sticky bit (/tmp is 1777) lets only the
// owner of an entry rename it, so such a parent is fine. These are the
// checks OpenSSH makes of the folders above a user's authorized keys.
func checkFolderParents(dir string) error {
	euid := os.Geteuid()
	for child, parent := dir, filepath.Dir(dir); parent != child; child, parent = parent, filepath.Dir(parent) {
		fi, err := os.Lstat(parent)
		if err != nil {
			return gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `path: session folder %q: parent folder %q`, dir, parent)
		}
		if risk := parentFolderRisk(fi, euid); risk != "" {
			return gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`path: session folder %q is inside %q, which %s: another user could put a folder of their own in the session folder's place and forge sessions; choose a folder whose parents only the application's user or root can change`,
				dir, parent, risk)
		}
	}
	return nil
}

// parentFolderRisk returns why the parent folder `fi` describes lets a user
// other than root and `euid` rename or replace its entries ("belongs to
// user id 1000"), or "" when it does not.
func parentFolderRisk(fi os.FileInfo, euid int) string {
	if !fi.IsDir() {
		return "is a " + fileKind(fi.Mode()) + ", not a folder"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Sprintf("belongs to user id %d", st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Sprintf("other users can write (mode %s, no sticky bit)", unixMode(fi.Mode()))
	}
	return ""
}

// unixMode returns the permission and special bits of `mode` in octal, as
// chmod and ls take them: "1777" for /tmp, "0755" for a usual folder.
func unixMode(mode fs.FileMode) string {
	bits := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return fmt.Sprintf("%04o", bits)
}

// isSystemFolder reports whether `dir` (absolute, symbolic links resolved)
// is a folder the system or the user shares with other programs: the root,
// the temporary folders, the home folder itself.
func isSystemFolder(dir string) bool {
	candidates := []string{"/", "/tmp", "/var/tmp", "/dev/shm", "/run", "/var", "/usr", "/etc", "/home", os.TempDir()}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, home)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if resolved, err := filepath.EvalSymlinks(c); err == nil {
			c = resolved
		}
		if filepath.Clean(c) == dir {
			return true
		}
	}
	return false
}
