//go:build unix

package gfsession

import (
	"os"
	"syscall"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

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
