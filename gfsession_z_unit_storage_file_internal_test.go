//go:build unix

package gfsession

import (
	"io/fs"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TouchFile exports touchFile to the tests of package gfsession_test.
var TouchFile = touchFile

// fakeFolderInfo describes a folder of owner `uid` and mode `mode`.
type fakeFolderInfo struct {
	uid  uint32
	mode fs.FileMode
}

func (f fakeFolderInfo) Name() string       { return "parent" }
func (f fakeFolderInfo) Size() int64        { return 4096 }
func (f fakeFolderInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeFolderInfo) ModTime() time.Time { return time.Time{} }
func (f fakeFolderInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFolderInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid} }

// TestStorageFile_ParentFolderRisk checks which owners and modes of a
// parent folder let another user replace the session folder, for owners a
// test process cannot give a folder unless it runs as root.
func TestStorageFile_ParentFolderRisk(t *testing.T) {
	const (
		self  = 1000
		other = 1001
	)
	tests := []struct {
		uid  uint32
		mode fs.FileMode
		euid int
		want string
	}{
		{0, fs.ModeDir | 0o755, self, ""},
		{0, fs.ModeDir | fs.ModeSticky | 0o777, self, ""},
		{0, fs.ModeDir | fs.ModeSticky | 0o770, self, ""},
		{self, fs.ModeDir | 0o700, self, ""},
		{self, fs.ModeDir | 0o755, self, ""},
		{self, fs.ModeDir | fs.ModeSticky | 0o777, self, ""},
		{0, fs.ModeDir | 0o755, 0, ""},
		{0, fs.ModeDir | 0o775, self, "other users can write (mode 0775, no sticky bit)"},
		{0, fs.ModeDir | 0o757, self, "other users can write (mode 0757, no sticky bit)"},
		{0, fs.ModeDir | fs.ModeSetgid | 0o777, self, "other users can write (mode 2777, no sticky bit)"},
		{self, fs.ModeDir | 0o770, self, "other users can write (mode 0770, no sticky bit)"},
		{0, fs.ModeDir | 0o777, 0, "other users can write (mode 0777, no sticky bit)"},
		{other, fs.ModeDir | 0o755, self, "belongs to user id 1001"},
		{other, fs.ModeDir | 0o700, self, "belongs to user id 1001"},
		{other, fs.ModeDir | fs.ModeSticky | 0o777, self, "belongs to user id 1001"},
		{other, fs.ModeDir | 0o755, 0, "belongs to user id 1001"},
		{0, fs.ModeSymlink | 0o777, self, "is a symbolic link, not a folder"},
	}
	for _, tt := range tests {
		got := parentFolderRisk(fakeFolderInfo{uid: tt.uid, mode: tt.mode}, tt.euid)
		assert.Equal(t, tt.want, got, "owner %d, mode %s, process user %d", tt.uid, tt.mode, tt.euid)
	}
}
