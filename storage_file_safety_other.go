//go:build !unix

package gfsession

import (
	"io/fs"
	"os"
)

// checkFolderOwner has no owner or mode bits to check outside unix.
func checkFolderOwner(dir string, fi os.FileInfo) error { return nil }

// checkFolderParents has no owner or mode bits to check outside unix.
func checkFolderParents(dir string) error { return nil }

// openNoFollow opens `path` with `flag` and `perm` as os.OpenFile does, but
// refuses a symbolic link at `path` with a *refusedFileError. Outside unix
// there is no O_NOFOLLOW: the check and the open are two steps.
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, refusedFile(fi, 0)
	}
	return os.OpenFile(path, flag, perm)
}
