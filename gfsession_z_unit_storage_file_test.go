package gfsession_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

func newFile(t *testing.T, config gfsession.FileConfig) *gfsession.StorageFile {
	t.Helper()
	if config.Path == "" {
		config.Path = t.TempDir()
	}
	s, err := gfsession.NewStorageFile(config)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

func sessionFile(s *gfsession.StorageFile, id string) string {
	return gfsession.FileSessionPath(s, id)
}

func TestStorageFile_Conformance(t *testing.T) {
	dir := t.TempDir()
	storagetest.Run(t,
		func(t *testing.T) gsession.Storage { return newFile(t, gfsession.FileConfig{Path: dir}) },
		storagetest.DropsStaleWrites(),
		storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
			return newFile(t, gfsession.FileConfig{Path: dir, MaxLifetime: d})
		}),
		storagetest.WithCorrupter(func(t *testing.T, s gsession.Storage, id string, data []byte) {
			require.NoError(t, os.WriteFile(sessionFile(s.(*gfsession.StorageFile), id), data, 0o600))
		}),
		storagetest.WithCryptoKeys(func(t *testing.T, keys [][]byte) gsession.Storage {
			// Storages of one test share a folder (a folder per test keeps the
			// tests of the suite apart).
			return newFile(t, gfsession.FileConfig{Path: filepath.Join(dir, "sealed-"+sanitize(t.Name())), CryptoKeys: keys})
		}),
		storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
			return newFile(t, gfsession.FileConfig{UserKey: userKey}) // a folder of its own
		}),
		storagetest.WithCopier(func(t *testing.T, s gsession.Storage, from, to string) {
			data, err := os.ReadFile(sessionFile(s.(*gfsession.StorageFile), from))
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(sessionFile(s.(*gfsession.StorageFile), to)), 0o700))
			require.NoError(t, os.WriteFile(sessionFile(s.(*gfsession.StorageFile), to), data, 0o600))
		}),
		storagetest.RequireAll(),
	)
}

func sanitize(name string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(name)
}

func TestStorageFile_Modes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "sessions")
	s := newFile(t, gfsession.FileConfig{Path: dir})
	m := gsession.New(time.Minute, s)
	id := storagetest.NewId()
	sess := m.New(context.Background(), id)
	require.NoError(t, sess.Set("user", "ann"))
	require.NoError(t, sess.Close())

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), "session folder mode")
	fi, err = os.Stat(sessionFile(s, id))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "session file mode")

	// The session file is in its sub-folder, every sub-folder is 0700, and
	// the write went through a temporary file that is gone.
	assert.Equal(t, filepath.Join(dir, filepath.Base(filepath.Dir(sessionFile(s, id))), gfsession.Handle(id)+".session"), sessionFile(s, id))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 64)
	files := 0
	for _, e := range entries {
		require.True(t, e.IsDir(), e.Name())
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), "sub-folder mode")
		inside, err := os.ReadDir(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		for _, f := range inside {
			assert.Equal(t, gfsession.Handle(id)+".session", f.Name(), "only the session file, named by the handle, is left")
			files++
		}
	}
	assert.Equal(t, 1, files)

	// A session with no keys left is deleted.
	sess = m.New(context.Background(), id)
	require.NoError(t, sess.Remove("user"))
	require.NoError(t, sess.Close())
	assert.NoFileExists(t, sessionFile(s, id))

	// A sub-folder removed under the storage is made again.
	require.NoError(t, os.RemoveAll(filepath.Dir(sessionFile(s, id))))
	sess = m.New(context.Background(), id)
	require.NoError(t, sess.Set("n", 1))
	require.NoError(t, sess.Close())
	assert.FileExists(t, sessionFile(s, id))
}

// listing returns every path under `root` with its mode and, for files, size,
// mtime and content, to detect any change.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			out[rel] = fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%s %d %d %q", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), b)
		return nil
	}))
	return out
}

func TestStorageFile_HostileIdsStayInFolder(t *testing.T) {
	parent := t.TempDir()
	// Files a naive storage would read, touch, overwrite or delete for ids
	// like "../x" or "../../etc/passwd".
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"x.session", "victim.session", "sessions/../x.session", "etc/passwd.session"} {
		path := filepath.Join(parent, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		require.NoError(t, os.WriteFile(path, []byte(`12345678{"k":"stolen"}`), 0o600))
		require.NoError(t, os.Chtimes(path, old, old))
	}
	dir := filepath.Join(parent, "sessions")
	s := newFile(t, gfsession.FileConfig{Path: dir})
	m := gsession.New(time.Minute, s)
	ctx := context.Background()
	before := listing(t, parent)

	for _, id := range append(storagetest.HostileIds, "../x", "../victim", "../../"+filepath.Base(parent)+"/x") {
		name := fmt.Sprintf("%.20q", id)
		data, err := s.GetSession(ctx, id, time.Hour)
		require.NoError(t, err, name)
		assert.Nil(t, data, name)
		err = s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour)
		assert.Error(t, err, name)
		assert.NoError(t, s.UpdateTTL(ctx, id, time.Hour), name)
		assert.NoError(t, s.RemoveAll(ctx, id), name)
		if id != "" { // gf makes a new id for an empty one
			sess := m.New(ctx, id)
			_ = sess.Set("k", "v")
			_ = sess.Close()
		}
	}
	assert.Equal(t, before, listing(t, parent), "a hostile id changed something")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() == ".tmp" && e.IsDir() {
			continue // the temporary folder
		}
		assert.True(t, gfsession.IsValidSessionId(strings.TrimSuffix(e.Name(), ".session")), "unexpected file %q", e.Name())
	}
}

func TestStorageFile_ReadsGfStorageFile(t *testing.T) {
	for _, crypto := range []bool{false, true} {
		t.Run(fmt.Sprintf("crypto=%v", crypto), func(t *testing.T) {
			var (
				ctx = context.Background()
				dir = t.TempDir()
				id  = storagetest.NewId()
				gf  = gsession.NewStorageFile(dir, time.Hour)
			)
			gf.SetCryptoEnabled(crypto)
			require.NoError(t, gf.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{
				"user": "ann", "uid": int64(1) << 60, "roles": []any{"admin"},
			}, true), time.Hour))

			s := newFile(t, gfsession.FileConfig{Path: dir})
			legacy := filepath.Join(dir, id+".session")
			require.FileExists(t, legacy)
			data, err := s.GetSession(ctx, id, time.Hour)
			require.NoError(t, err)
			require.NotNil(t, data, "a session written by gf's StorageFile must be read")
			assert.Equal(t, map[string]any{"user": "ann", "uid": int64(1) << 60, "roles": []any{"admin"}}, data.Map())

			// The read moved the file to the handle's name: no file is
			// named by the id any more.
			assert.NoFileExists(t, legacy, "gf's file must be moved to the handle's name when read")
			require.FileExists(t, sessionFile(s, id))

			// The next change rewrites it in the current format, readable
			// again.
			m := gsession.New(time.Hour, s)
			sess := m.New(ctx, id)
			require.NoError(t, sess.Set("more", true))
			require.NoError(t, sess.Close())
			b, err := os.ReadFile(sessionFile(s, id))
			require.NoError(t, err)
			assert.Equal(t, []byte{0xF5, 'G', 'S'}, b[:3])
			data, err = s.GetSession(ctx, id, time.Hour)
			require.NoError(t, err)
			assert.Equal(t, "ann", data.Get("user"))
			assert.Equal(t, true, data.Get("more"))
			n, err := s.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)

			// A gf file next to a session in the current layout (a failed
			// removal) is not counted twice, and RemoveAll removes both.
			require.NoError(t, os.WriteFile(legacy, []byte("x"), 0o600))
			n, err = s.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			require.NoError(t, s.RemoveAll(ctx, id))
			assert.NoFileExists(t, legacy)
			assert.NoFileExists(t, sessionFile(s, id))
		})
	}
}

// TestStorageFile_AtomicWrites is gf issue #4792: gf's StorageFile truncates
// the file and then writes it, so a concurrent reader sees an empty or
// partial session. Here a reader sees the old or the new session, whole.
func TestStorageFile_AtomicWrites(t *testing.T) {
	const (
		keys    = 200
		readers = 4
		writes  = 300
	)
	s := newFile(t, gfsession.FileConfig{})
	ctx := context.Background()
	id := storagetest.NewId()
	session := func(gen int) *gmap.StrAnyMap {
		m := make(map[string]any, keys)
		for k := 0; k < keys; k++ {
			m[fmt.Sprintf("key%03d", k)] = fmt.Sprintf("gen %d %s", gen, strings.Repeat("x", k))
		}
		return gmap.NewStrAnyMapFrom(m, true)
	}
	require.NoError(t, s.SetSession(ctx, id, session(0), time.Minute))

	var (
		done  atomic.Bool
		reads atomic.Int64
		bad   atomic.Int64
		wg    sync.WaitGroup
	)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				data, err := s.GetSession(ctx, id, time.Minute)
				reads.Add(1)
				if err != nil || data == nil || data.Size() != keys {
					if bad.Add(1) == 1 {
						t.Errorf("reader saw a broken session: err=%v, data=%v", err, data != nil)
					}
					continue
				}
				gen := strings.Fields(data.Get("key000").(string))[1]
				for k := 0; k < keys; k++ {
					v, _ := data.Get(fmt.Sprintf("key%03d", k)).(string)
					if !strings.HasPrefix(v, "gen "+gen+" ") {
						if bad.Add(1) == 1 {
							t.Errorf("reader saw a mix of generations: key000 is gen %s, key%03d is %q", gen, k, v)
						}
						break
					}
				}
			}
		}()
	}
	for gen := 1; gen <= writes; gen++ {
		require.NoError(t, s.SetSession(ctx, id, session(gen), time.Minute))
	}
	done.Store(true)
	wg.Wait()
	assert.Zero(t, bad.Load(), "broken reads out of %d", reads.Load())
	t.Logf("%d writes, %d concurrent reads, all whole", writes, reads.Load())
}

func TestStorageFile_ReadTouchesMetadataOnly(t *testing.T) {
	const ttl = time.Minute
	var (
		ctx = context.Background()
		key = make([]byte, 32)
	)
	_, _ = rand.Read(key)
	// Sealed: every rewrite has a new nonce, so any rewrite shows in the bytes.
	s := newFile(t, gfsession.FileConfig{CryptoKeys: [][]byte{key}})
	id := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), ttl))
	path := sessionFile(s, id)
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	before, err := os.Stat(path)
	require.NoError(t, err)

	// Idle for half the TTL, then a read-only request.
	past := time.Now().Add(-ttl / 2)
	require.NoError(t, os.Chtimes(path, past, past))
	m := gsession.New(ttl, s)
	sess := m.New(ctx, id)
	assert.Equal(t, "v", sess.MustGet("k").String())
	require.NoError(t, sess.Close())
	after, err := os.Stat(path)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), after.ModTime(), 5*time.Second, "a read must move the mtime to now")
	assert.True(t, os.SameFile(before, after), "a read must not replace the file")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, content, got, "a read must not rewrite the content")

	// An expired session is not brought back: UpdateTTL does nothing, and
	// a read removes the file.
	past = time.Now().Add(-2 * ttl)
	require.NoError(t, os.Chtimes(path, past, past))
	require.NoError(t, s.UpdateTTL(ctx, id, ttl))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.True(t, fi.ModTime().Equal(past), "UpdateTTL resurrected an expired session")
	data, err := s.GetSession(ctx, id, ttl)
	require.NoError(t, err)
	assert.Nil(t, data)
	assert.NoFileExists(t, path, "an expired session file is removed when read")

	// A missing session is not created.
	require.NoError(t, s.UpdateTTL(ctx, id, ttl))
	assert.NoFileExists(t, path)
}

// createdAt returns the creation time stored in a session file's header.
func createdAt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(b), 13)
	var ms int64
	for _, c := range b[5:13] {
		ms = ms<<8 | int64(c)
	}
	return ms
}

func TestStorageFile_RewriteKeepsCreationTime(t *testing.T) {
	s := newFile(t, gfsession.FileConfig{MaxLifetime: time.Hour})
	m := gsession.New(time.Minute, s)
	ctx := context.Background()
	id := storagetest.NewId()
	sess := m.New(ctx, id)
	require.NoError(t, sess.Set("n", 1))
	require.NoError(t, sess.Close())
	created := createdAt(t, sessionFile(s, id))
	require.Eventually(t, func() bool { return time.Now().UnixMilli() > created+2 }, time.Second, time.Millisecond)

	for i := 2; i < 5; i++ {
		sess = m.New(ctx, id)
		require.NoError(t, sess.Set("n", i))
		require.NoError(t, sess.Close())
		assert.Equal(t, created, createdAt(t, sessionFile(s, id)), "a rewrite must keep the creation time")
	}
	// A map not loaded from this session starts a new lifetime.
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"n": 9}, true), time.Minute))
	assert.Greater(t, createdAt(t, sessionFile(s, id)), created)
}

func TestStorageFile_Cleaner(t *testing.T) {
	var (
		ctx   = context.Background()
		dir   = t.TempDir()
		stale = storagetest.NewId()
		now   = time.Now()
	)
	put := func(name string, age time.Duration) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
		mtime := now.Add(-age)
		require.NoError(t, os.Chtimes(path, mtime, mtime))
		return path
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "00"), 0o700))
	staleSharded := storagetest.NewId()
	var (
		stalePath = put(stale+".session", time.Hour) // gf's layout
		oldTemp   = put("00/.gfsession-123.tmp", 2*time.Minute)
		newTemp   = put("00/.gfsession-456.tmp", 0)
		foreign   = []string{
			put("notes.txt", time.Hour), put("a.b.session", time.Hour), put(".hidden", time.Hour),
			put("00/notes.txt", time.Hour),
		}
	)
	s := newFile(t, gfsession.FileConfig{Path: dir, CleanupInterval: 50 * time.Millisecond})
	staleShardedPath := sessionFile(s, staleSharded)
	put(filepath.Join(filepath.Base(filepath.Dir(staleShardedPath)), gfsession.Handle(staleSharded)+".session"), time.Hour)

	// Before any call the storage knows no TTL: only leftover temp files go.
	require.Eventually(t, func() bool { return !fileExists(oldTemp) }, 5*time.Second, 10*time.Millisecond)
	assert.FileExists(t, stalePath, "the cleaner removed a session before knowing any TTL")
	assert.FileExists(t, staleShardedPath, "the cleaner removed a session before knowing any TTL")
	assert.FileExists(t, newTemp, "the cleaner removed a temp file of a write in progress")

	// Once called with a TTL, files idle for longer go; live ones stay.
	m := gsession.New(10*time.Minute, s)
	live := storagetest.NewId()
	sess := m.New(ctx, live)
	require.NoError(t, sess.Set("k", "v"))
	require.NoError(t, sess.Close())
	require.Eventually(t, func() bool { return !fileExists(stalePath) && !fileExists(staleShardedPath) }, 5*time.Second, 10*time.Millisecond)
	assert.FileExists(t, sessionFile(s, live))
	assert.FileExists(t, newTemp)
	for _, path := range foreign {
		assert.FileExists(t, path, "the cleaner removed a file that is not its own")
	}
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestStorageFile_Close checks that the storage keeps serving after Close;
// that Close stops the cleaner is TestBackground_Close's.
func TestStorageFile_Close(t *testing.T) {
	s, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: t.TempDir(), CleanupInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Close(context.Background()))
	require.NoError(t, s.Close(context.Background()), "Close must be idempotent")

	// The storage keeps serving after Close.
	ctx := context.Background()
	id := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Minute))
	data, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "v", data.Get("k"))

}

func TestStorageFile_Config(t *testing.T) {
	var (
		ctx     = context.Background()
		goodKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		shortKy = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
		aFile   = filepath.Join(t.TempDir(), "file")
	)
	require.NoError(t, os.WriteFile(aFile, nil, 0o600))
	tests := []struct {
		name    string
		config  map[string]any
		wantErr []string // substrings of the error; nil: success
	}{
		{"unknown key", map[string]any{"pathh": t.TempDir()}, []string{"sessionStorage.pathh", "unknown key", "path"}},
		{"bare number cleanupInterval", map[string]any{"cleanupInterval": 60}, []string{"sessionStorage.cleanupInterval", "unit"}},
		{"bare number maxLifetime", map[string]any{"maxLifetime": "3600"}, []string{"sessionStorage.maxLifetime", "unit"}},
		{"short crypto key", map[string]any{"cryptoKeys": []any{goodKey, shortKy}}, []string{"sessionStorage.cryptoKeys", "cryptoKeys[1]", "32"}},
		{"bad codec", map[string]any{"codec": "xml"}, []string{"codec", "xml", "binary", "json"}},
		{"bad fsync", map[string]any{"fsync": "maybe"}, []string{"sessionStorage.fsync"}},
		{"path is a file", map[string]any{"path": aFile}, []string{"path", aFile}},
		{"negative maxFileSize", map[string]any{"maxFileSize": -1}, []string{"sessionStorage.maxFileSize", ">= 0"}},
		{"maxFileSize not a number", map[string]any{"maxFileSize": "1MB"}, []string{"sessionStorage.maxFileSize", "whole number"}},
		{"good", map[string]any{
			"path": t.TempDir(), "maxLifetime": "1h", "cryptoKeys": []any{goodKey}, "codec": "json",
			"fsync": true, "cleanupInterval": "1m", "userKey": "uid", "maxFileSize": 65536,
		}, nil},
		{"defaults", map[string]any{"path": t.TempDir()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := map[string]any{"type": "file"}
			for k, v := range tt.config {
				config[k] = v
			}
			st, err := gfsession.New(ctx, config)
			if tt.wantErr != nil {
				require.Error(t, err)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			s, ok := st.(*gfsession.StorageFile)
			require.True(t, ok, "got %T", st)
			t.Cleanup(func() { require.NoError(t, s.Close(ctx)) })
			assert.Equal(t, tt.config["path"], s.Path())
			m := gsession.New(time.Minute, s)
			id := storagetest.NewId()
			sess := m.New(ctx, id)
			require.NoError(t, sess.Set("user", "ann"))
			require.NoError(t, sess.Close())
			assert.Equal(t, "ann", m.New(ctx, id).MustGet("user").String())
		})
	}
}

func TestStorageFile_AdminFolderScan(t *testing.T) {
	const n = 600 // more than one batch of directory entries
	var (
		ctx = context.Background()
		s   = newFile(t, gfsession.FileConfig{UserKey: "uid", CleanupInterval: 50 * time.Millisecond})
		ids = make([]string, n)
	)
	for i := range ids {
		ids[i] = storagetest.NewId()
		require.NoError(t, s.SetSession(ctx, ids[i], gmap.NewStrAnyMapFrom(map[string]any{"uid": i % 3}, true), time.Minute))
	}
	count, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, n, count)
	seen := map[string]bool{}
	require.NoError(t, s.Range(ctx, func(id string) bool { seen[id] = true; return true }))
	assert.Len(t, seen, n)

	// Sessions idle for longer than the TTL are not counted (and swept).
	old := time.Now().Add(-2 * time.Minute)
	for _, id := range ids[:100] {
		require.NoError(t, os.Chtimes(sessionFile(s, id), old, old))
	}
	count, err = s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, n-100, count)

	// The user index is private, and the cleaner drops entries of sessions
	// that are gone.
	fi, err := os.Stat(filepath.Join(s.Path(), ".users"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
	for _, id := range ids[100:] {
		require.NoError(t, s.RemoveAll(ctx, id))
	}
	require.Eventually(t, func() bool {
		entries, err := os.ReadDir(filepath.Join(s.Path(), ".users"))
		return err == nil && len(entries) == 0
	}, 5*time.Second, 20*time.Millisecond, "index entries of removed sessions were not swept")
	count, err = s.Count(ctx)
	require.NoError(t, err)
	assert.Zero(t, count)

	// Range stops when asked and honours the context.
	require.NoError(t, s.SetSession(ctx, ids[0], gmap.NewStrAnyMapFrom(map[string]any{"k": 1}, true), time.Minute))
	require.NoError(t, s.SetSession(ctx, ids[1], gmap.NewStrAnyMapFrom(map[string]any{"k": 1}, true), time.Minute))
	calls := 0
	require.NoError(t, s.Range(ctx, func(string) bool { calls++; return false }))
	assert.Equal(t, 1, calls)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, s.Range(cancelled, func(string) bool { return true }), context.Canceled)
}

func TestStorageFile_ReadTouchSlack(t *testing.T) {
	ctx := context.Background()
	s := newFile(t, gfsession.FileConfig{})
	tests := []struct {
		name    string
		ttl     time.Duration
		age     time.Duration
		touched bool
	}{
		{"busy session, long TTL: no metadata write", time.Hour, 500 * time.Millisecond, false},
		{"beyond the 1s cap", time.Hour, 2 * time.Second, true},
		{"short TTL: ttl/64 is the slack", 640 * time.Millisecond, 20 * time.Millisecond, true},
		{"within ttl/64", 32 * time.Second, 20 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := storagetest.NewId()
			require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), tt.ttl))
			mtime := time.Now().Add(-tt.age)
			require.NoError(t, os.Chtimes(sessionFile(s, id), mtime, mtime))
			data, err := s.GetSession(ctx, id, tt.ttl)
			require.NoError(t, err)
			require.NotNil(t, data)
			fi, err := os.Stat(sessionFile(s, id))
			require.NoError(t, err)
			assert.Equal(t, tt.touched, !fi.ModTime().Equal(mtime))
		})
	}
}

// TestStorageFile_ShortFileReadsAsNoSession checks that a session file cut
// short (by hand, or a gf file rewritten while it is read) reads as no
// session, not as an error.
func TestStorageFile_ShortFileReadsAsNoSession(t *testing.T) {
	ctx := context.Background()
	s := newFile(t, gfsession.FileConfig{})
	for _, keep := range []int{0, 1, 10} {
		id := storagetest.NewId()
		require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "a value"}, true), time.Hour))
		path := sessionFile(s, id)
		require.NoError(t, os.Truncate(path, int64(keep)))
		data, err := s.GetSession(ctx, id, time.Hour)
		require.NoError(t, err, "keep %d bytes", keep)
		assert.Nil(t, data, "keep %d bytes", keep)
	}
}

// fileLogBuffer collects what gf's default logger writes while a test runs.
// TestStorageFile_SetSessionNil checks that nil data is an error that
// leaves the stored session alone (gf never passes nil; other callers can).
func TestStorageFile_SetSessionNil(t *testing.T) {
	ctx := context.Background()
	s := newFile(t, gfsession.FileConfig{})
	id := storagetest.NewId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour))
	var err error
	require.NotPanics(t, func() { err = s.SetSession(ctx, id, nil, time.Hour) })
	require.Error(t, err)
	assert.NotContains(t, err.Error(), id)
	data, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	require.NotNil(t, data, "nil data deleted the session")
	assert.Equal(t, "v", data.Get("k"))
}

// TestStorageFile_MaxFileSize checks that a session file larger than
// MaxFileSize reads as no session without being read, and that a session
// too large to be read back is never written.
func TestStorageFile_MaxFileSize(t *testing.T) {
	ctx := context.Background()
	t.Run("a huge file is not read", func(t *testing.T) {
		s := newFile(t, gfsession.FileConfig{})
		id := storagetest.NewId()
		f, err := os.OpenFile(sessionFile(s, id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		require.NoError(t, err)
		require.NoError(t, f.Truncate(64<<20)) // sparse: costs no disk
		require.NoError(t, f.Close())
		logs := captureLog(t)

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		data, err := s.GetSession(ctx, id, time.Hour)
		runtime.ReadMemStats(&after)
		require.NoError(t, err)
		assert.Nil(t, data)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "the oversized file was read")
		assert.Contains(t, logs.String(), fmt.Sprintf("more than maxFileSize (%d bytes)", gfsession.DefaultFileMaxSize))
		assert.NotContains(t, logs.String(), id)
	})
	t.Run("a session too large to read back is not written", func(t *testing.T) {
		const max = 4096
		s := newFile(t, gfsession.FileConfig{MaxFileSize: max})
		m := gsession.New(time.Hour, s)
		id := storagetest.NewId()
		sess := m.New(ctx, id)
		require.NoError(t, sess.Set("user", "ann"))
		require.NoError(t, sess.Set("note", strings.Repeat("n", max/2)))
		require.NoError(t, sess.Close())
		fi, err := os.Stat(sessionFile(s, id))
		require.NoError(t, err)
		require.LessOrEqual(t, fi.Size(), int64(max))

		sess = m.New(ctx, id)
		require.NoError(t, sess.Set("note", strings.Repeat("n", max)))
		err = sess.Close()
		require.Error(t, err, "a session larger than maxFileSize was written")
		assert.Contains(t, err.Error(), "maxFileSize (4096 bytes)")
		assert.NotContains(t, err.Error(), id)

		// The stored session is still the one before.
		data, err := s.GetSession(ctx, id, time.Hour)
		require.NoError(t, err)
		require.NotNil(t, data)
		assert.Equal(t, "ann", data.Get("user"))
		assert.Len(t, data.Get("note"), max/2)
	})
	t.Run("config", func(t *testing.T) {
		_, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: t.TempDir(), MaxFileSize: -1})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "maxFileSize")
	})
}

// TestStorageFile_IdsNotInMessages checks that no error or log line of the
// file storage holds a whole session id (a bearer token), although the
// paths of session files do.
func TestStorageFile_IdsNotInMessages(t *testing.T) {
	type reqKey struct{}
	var (
		ctx  = context.Background()
		s    = newFile(t, gfsession.FileConfig{})
		m    = gsession.New(time.Hour, s)
		logs = captureLog(t)
		ids  []string
	)
	newId := func() string {
		id := storagetest.NewId()
		ids = append(ids, id)
		return id
	}

	// A corrupt session file: logged, reads as no session.
	corrupt := newId()
	require.NoError(t, os.WriteFile(sessionFile(s, corrupt), []byte("garbage that is not a session"), 0o600))
	data, err := s.GetSession(ctx, corrupt, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, data)

	// A stale write: a request loaded the session, another one deleted it.
	stale := newId()
	require.NoError(t, s.SetSession(ctx, stale, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour))
	sess := m.New(context.WithValue(ctx, reqKey{}, 1), stale)
	assert.Equal(t, "v", sess.MustGet("k").String())
	require.NoError(t, s.RemoveAll(context.WithValue(ctx, reqKey{}, 2), stale))
	require.NoError(t, sess.Set("k", "w"))
	require.NoError(t, sess.Close())
	assert.NoFileExists(t, sessionFile(s, stale), "a deleted session came back")

	// I/O errors: the session's sub-folder is a file.
	broken := newId()
	shard := filepath.Dir(sessionFile(s, broken))
	require.NoError(t, os.RemoveAll(shard))
	require.NoError(t, os.WriteFile(shard, nil, 0o600))
	_, getErr := s.GetSession(ctx, broken, time.Hour)
	setErr := s.SetSession(ctx, broken, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Hour)
	removeErr := s.RemoveAll(ctx, broken)
	for name, err := range map[string]error{"GetSession": getErr, "SetSession": setErr, "RemoveAll": removeErr} {
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), gfsession.Handle(broken)[:8], "%s: the error should name the session by its handle", name)
		assert.Contains(t, err.Error(), shard, "%s: the error should name the folder", name)
		assert.NotContains(t, fmt.Sprintf("%+v", err), broken, "%s: the error holds the whole id", name)
	}

	out := logs.String()
	assert.Contains(t, out, gfsession.Handle(corrupt)[:8], "the corrupt session was not logged")
	assert.Contains(t, out, gfsession.Handle(stale)[:8], "the stale write was not logged")
	for _, id := range ids {
		assert.NotContains(t, out, id, "a log line holds a whole session id")
	}
}
