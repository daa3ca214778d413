//go:build unix

package gfsession_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

// TestStorageFile_FolderRefused checks that a session folder other users
// can write, or that belongs to another user, is refused (they could plant a
// session file, without CryptoKeys one that logs them in as anyone, or
// delete sessions), with a message that shows the mode as chmod takes it and
// never suggests changing the mode of a folder that is not the
// application's own.
func TestStorageFile_FolderRefused(t *testing.T) {
	ownFolder := "choose a folder of the application's own"
	withMode := func(mode os.FileMode) func(t *testing.T) string {
		return func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "sessions")
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.Chmod(dir, mode))
			return dir
		}
	}
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		want    []string
		notWant []string
	}{
		{"own folder, writable by all", withMode(0o777),
			[]string{"writable by other users", "(mode 0777)", `make it 0700 (chmod 700 "`}, []string{ownFolder}},
		{"own folder, writable by the group", withMode(0o770),
			[]string{"writable by other users", "(mode 0770)", "chmod 700"}, nil},
		{"own folder, writable by others, setgid", withMode(0o702 | os.ModeSetgid),
			[]string{"(mode 2702)", "chmod 700"}, nil},
		{"sticky folder", withMode(0o777 | os.ModeSticky),
			[]string{"shared or system folder", "(mode 1777)", ownFolder, "sub-folder"}, []string{"chmod"}},
		{"/tmp", func(*testing.T) string { return "/tmp" },
			[]string{`"/tmp"`, "shared or system folder", "(mode 1777)", ownFolder}, []string{"chmod"}},
		{"/var/tmp", func(*testing.T) string { return "/var/tmp" },
			[]string{"(mode 1777)", ownFolder}, []string{"chmod"}},
		{"the home folder", func(t *testing.T) string {
			dir := withMode(0o777)(t)
			t.Setenv("HOME", dir)
			return dir
		}, []string{"shared or system folder", "(mode 0777)", ownFolder}, []string{"chmod"}},
		{"another user's folder", func(t *testing.T) string {
			if os.Geteuid() != 0 {
				return "/" // root's
			}
			dir := withMode(0o700)(t)
			require.NoError(t, os.Chown(dir, 65534, 65534))
			return dir
		}, []string{"belongs to user id", ownFolder}, []string{"chmod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			before, err := os.ReadDir(dir)
			require.NoError(t, err)
			_, err = gfsession.NewStorageFile(gfsession.FileConfig{Path: dir})
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), "path: session folder")
			for _, want := range tt.want {
				assert.Contains(t, err.Error(), want)
			}
			for _, notWant := range tt.notWant {
				assert.NotContains(t, err.Error(), notWant)
			}
			after, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Equal(t, len(before), len(after), "something was created in a refused folder")
		})
	}

	dir := withMode(0o750)(t)
	newFile(t, gfsession.FileConfig{Path: dir}) // readable by the group is fine

	// A sub-folder of the storage's that others can write is refused too.
	dir = withMode(0o700)(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "00"), 0o700))
	require.NoError(t, os.Chmod(filepath.Join(dir, "00"), 0o777))
	_, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writable by other users")
}

// TestStorageFile_SymlinkedFolderResolvedOnce checks that a `path` that is a
// symbolic link is resolved when the storage is created: repointing the
// link later, to a folder another user can write, changes nothing.
func TestStorageFile_SymlinkedFolderResolvedOnce(t *testing.T) {
	var (
		ctx  = context.Background()
		root = t.TempDir()
		own  = filepath.Join(root, "own")
		evil = filepath.Join(root, "evil")
		link = filepath.Join(root, "link")
		id   = storagetest.NewId()
	)
	// A forged session in a folder anyone can write (refused as a path).
	forger := newFile(t, gfsession.FileConfig{Path: evil})
	require.NoError(t, forger.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "admin"}, true), time.Hour))
	require.NoError(t, os.Chmod(evil, 0o777))
	_, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: evil})
	require.Error(t, err)

	require.NoError(t, os.Mkdir(own, 0o700))
	require.NoError(t, os.Symlink(own, link))
	s := newFile(t, gfsession.FileConfig{Path: link})
	assert.Equal(t, own, s.Path())

	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(evil, link))
	data, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, data, "the storage read a session from the folder the link names now")

	other := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, other, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour))
	rel, err := filepath.Rel(own, sessionFile(s, other))
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(own, rel))
	assert.NoFileExists(t, filepath.Join(evil, rel), "the storage wrote into the folder the link names now")
}

// TestStorageFile_SymlinkNotFollowed checks that a symbolic link planted
// under a session file's name (in either layout) reads as no session,
// logged, and is never followed.
func TestStorageFile_SymlinkNotFollowed(t *testing.T) {
	var (
		ctx   = context.Background()
		s     = newFile(t, gfsession.FileConfig{UserKey: "uid"})
		other = newFile(t, gfsession.FileConfig{})
		id    = storagetest.NewId()
		logs  = captureLog(t)
	)
	require.NoError(t, other.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"uid": "admin"}, true), time.Hour))
	target := sessionFile(other, id)
	for _, path := range []string{sessionFile(s, id), filepath.Join(s.Path(), id+".session")} {
		require.NoError(t, os.Symlink(target, path))
		data, err := s.GetSession(ctx, id, time.Hour)
		require.NoError(t, err)
		assert.Nil(t, data, "a symbolic link was followed: %s", path)
		require.NoError(t, os.Remove(path))
	}
	out := logs.String()
	assert.Contains(t, out, "symbolic link")
	assert.Contains(t, out, gfsession.Handle(id)[:8])
	assert.NotContains(t, out, id)

	// A symbolic link in the user index is not followed either.
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann"}, true), time.Hour))
	n, err := s.DestroyUser(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.FileExists(t, target)
}

// TestStorageFile_SpecialFiles checks that a named pipe under a session
// file's name neither hangs a load, DestroyUser or the cleaner nor counts as
// a session: it reads as no session, logged.
func TestStorageFile_SpecialFiles(t *testing.T) {
	var (
		ctx   = context.Background()
		s     = newFile(t, gfsession.FileConfig{UserKey: "uid", CleanupInterval: 20 * time.Millisecond})
		logs  = captureLog(t)
		pipes []string
	)
	t.Cleanup(func() {
		// Release a reader stuck on a pipe (only without the fix).
		for _, p := range pipes {
			if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
				_ = f.Close()
			}
		}
	})
	mkfifo := func(path string) {
		require.NoError(t, syscall.Mkfifo(path, 0o600))
		pipes = append(pipes, path)
	}
	returns := func(what string, fn func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn()
		}()
		require.Eventually(t, func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}, 5*time.Second, 5*time.Millisecond, "%s hangs on a named pipe", what)
	}

	// A load, in both layouts.
	id := storagetest.NewId()
	for _, path := range []string{sessionFile(s, id), filepath.Join(s.Path(), id+".session")} {
		mkfifo(path)
		var (
			data *gmap.StrAnyMap
			err  error
		)
		returns("a load", func() { data, err = s.GetSession(ctx, id, time.Hour) })
		require.NoError(t, err)
		assert.Nil(t, data)
	}
	assert.Contains(t, logs.String(), "named pipe")
	assert.NotContains(t, logs.String(), id)

	// DestroyUser of a user whose indexed session became a pipe.
	user := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, user, gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann"}, true), time.Hour))
	require.NoError(t, os.Remove(sessionFile(s, user)))
	mkfifo(sessionFile(s, user))
	var (
		n   int
		err error
	)
	returns("DestroyUser", func() { n, err = s.DestroyUser(ctx, "ann") })
	require.NoError(t, err)
	assert.Zero(t, n)

	// Count skips the pipes; the cleaner goes past them, and leaves them.
	count, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Zero(t, count)
	stale := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, stale, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour))
	old := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(sessionFile(s, stale), old, old))
	require.Eventually(t, func() bool { return !fileExists(sessionFile(s, stale)) }, 5*time.Second, 10*time.Millisecond)
	for _, p := range pipes {
		assert.True(t, fileExists(p), "the cleaner removed %s", p)
	}

	// A session written under the name of a pipe replaces the pipe.
	m := gsession.New(time.Hour, s)
	sess := m.New(ctx, user)
	require.NoError(t, sess.Set("k", "v"))
	require.NoError(t, sess.Close())
	assert.Equal(t, "v", m.New(ctx, user).MustGet("k").String())
}

// TestStorageFile_WritableParentRefused checks that a session folder inside
// a folder another user can write (without the sticky bit) is refused: that
// user could rename the session folder away and put a symbolic link, or a
// folder of their own, in its place, and the storage would read the
// sessions they planted there.
func TestStorageFile_WritableParentRefused(t *testing.T) {
	var (
		ctx    = context.Background()
		root   = t.TempDir()
		shared = filepath.Join(root, "shared")
		app    = filepath.Join(shared, "app")
		evil   = filepath.Join(root, "evil")
		id     = storagetest.NewId()
	)
	require.NoError(t, os.Mkdir(shared, 0o700))
	require.NoError(t, os.Chmod(shared, 0o777))
	forger := newFile(t, gfsession.FileConfig{Path: evil})
	require.NoError(t, forger.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "admin"}, true), time.Hour))

	s, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: app, CleanupInterval: -1})
	if err == nil {
		// What the other user could then do, who can write `shared`:
		require.NoError(t, os.Rename(app, filepath.Join(shared, "old")))
		require.NoError(t, os.Symlink(evil, app))
		data, gerr := s.GetSession(ctx, id, time.Hour)
		require.NoError(t, gerr)
		assert.Nil(t, data, "the storage read a session planted through a writable parent folder")
		require.Fail(t, "a session folder inside a folder anyone can write was accepted")
	}
	t.Log(err)
	assert.Contains(t, err.Error(), `path: session folder "`+app+`" is inside "`+shared+`"`)
	assert.Contains(t, err.Error(), "(mode 0777, no sticky bit)")
	assert.Contains(t, err.Error(), "choose a folder whose parents only the application's user or root can change")
	assert.Equal(t, gcode.CodeInvalidConfiguration, gerror.Code(err))
	assert.NoDirExists(t, filepath.Join(app, "00"), "sub-folders were created in a refused folder")
}

// TestStorageFile_ParentFolders checks which parent folders of the session
// folder are accepted: those only root or the process's user can change,
// directly or through the sticky bit; and that a refused one is named, at
// whatever depth.
func TestStorageFile_ParentFolders(t *testing.T) {
	// under makes <t.TempDir()>/p1/p2/.../app with the modes given, outermost
	// first, and returns the session folder and the folders made.
	under := func(modes ...os.FileMode) func(t *testing.T) (string, []string) {
		return func(t *testing.T) (string, []string) {
			dir, made := t.TempDir(), []string(nil)
			for i, mode := range modes {
				dir = filepath.Join(dir, fmt.Sprintf("p%d", i+1))
				require.NoError(t, os.Mkdir(dir, 0o700))
				require.NoError(t, os.Chmod(dir, mode))
				made = append(made, dir)
			}
			return filepath.Join(dir, "app"), made
		}
	}
	tests := []struct {
		name string
		dir  func(t *testing.T) (string, []string)
		// refused is the index in the folders made of the one refused, -1 when
		// the session folder is accepted.
		refused int
		want    string
	}{
		{"t.TempDir()", under(), -1, ""},
		{"0755 parent, as /var/lib", under(0o755), -1, ""},
		{"0700 parent", under(0o700), -1, ""},
		{"0750 parent", under(0o750), -1, ""},
		{"sticky parent writable by all, as /tmp", under(0o777 | os.ModeSticky), -1, ""},
		{"sticky parent writable by the group", under(0o770 | os.ModeSticky), -1, ""},
		{"0755 inside a sticky folder", under(0o777|os.ModeSticky, 0o755), -1, ""},
		{"parent writable by all", under(0o777), 0, "(mode 0777, no sticky bit)"},
		{"parent writable by the group", under(0o770), 0, "(mode 0770, no sticky bit)"},
		{"parent writable by the group, as a shared /srv", under(0o775), 0, "(mode 0775, no sticky bit)"},
		{"parent writable by others only", under(0o757), 0, "(mode 0757, no sticky bit)"},
		{"setgid parent writable by all", under(0o777 | os.ModeSetgid), 0, "(mode 2777, no sticky bit)"},
		{"grandparent writable by all", under(0o777, 0o755), 0, "(mode 0777, no sticky bit)"},
		{"grandparent writable by the group", under(0o700, 0o775, 0o755), 1, "(mode 0775, no sticky bit)"},
	}
	if os.Geteuid() == 0 {
		// Only root can give a folder to another user (65534: nobody).
		owned := func(mode os.FileMode) func(t *testing.T) (string, []string) {
			return func(t *testing.T) (string, []string) {
				dir, made := under(mode)(t)
				require.NoError(t, os.Chown(made[0], 65534, 65534))
				return dir, made
			}
		}
		tests = append(tests, []struct {
			name    string
			dir     func(t *testing.T) (string, []string)
			refused int
			want    string
		}{
			{"another user's 0755 parent", owned(0o755), 0, "belongs to user id 65534"},
			{"another user's sticky parent", owned(0o777 | os.ModeSticky), 0, "belongs to user id 65534"},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, made := tt.dir(t)
			s, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: dir, CleanupInterval: -1})
			if tt.refused < 0 {
				require.NoError(t, err)
				assert.Equal(t, dir, s.Path())
				return
			}
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), fmt.Sprintf(`path: session folder %q is inside %q, which `, dir, made[tt.refused]))
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "choose a folder whose parents only the application's user or root can change")
		})
	}

	t.Run("default folder in the temporary folder", func(t *testing.T) {
		s, err := gfsession.NewStorageFile(gfsession.FileConfig{CleanupInterval: -1})
		require.NoError(t, err)
		assert.Equal(t, gfsession.DefaultFilePath, s.Path())
	})
	t.Run("a new folder in the temporary folder", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "gfsession-parents-")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		_, err = gfsession.NewStorageFile(gfsession.FileConfig{Path: filepath.Join(dir, "app"), CleanupInterval: -1})
		require.NoError(t, err)
	})
}

// TestStorageFile_TouchOpenFile checks that a read refreshes the
// modification time of the file it opened, not of whatever the path names
// by then: a symbolic link renamed over the session file between the open
// and the refresh leaves its target untouched.
func TestStorageFile_TouchOpenFile(t *testing.T) {
	var (
		ctx = context.Background()
		s   = newFile(t, gfsession.FileConfig{})
		id  = storagetest.NewId()
		old = time.Now().Add(-time.Minute).Truncate(time.Second)
	)
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour))
	path := sessionFile(s, id)
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("x"), 0o600))
	require.NoError(t, os.Chtimes(victim, old, old))
	require.NoError(t, os.Chtimes(path, old, old))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	link := path + ".link"
	require.NoError(t, os.Symlink(victim, link))
	require.NoError(t, os.Rename(link, path))

	now := time.Now()
	require.NoError(t, gfsession.TouchFile(f, path, now))
	fi, err := os.Stat(victim)
	require.NoError(t, err)
	assert.True(t, fi.ModTime().Equal(old), "the target of a symbolic link at the path was touched: %v", fi.ModTime())
	fi, err = f.Stat()
	require.NoError(t, err)
	assert.WithinDuration(t, now, fi.ModTime(), time.Millisecond, "the open file was not touched")
}
