package gfsession_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// everyStorage returns a constructor of each storage of the package, all
// with `userKey` and `maxLifetime` (0: none).
func everyStorage(t *testing.T, userKey string, maxLifetime time.Duration) map[string]func(t *testing.T) gsession.Storage {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	storages := map[string]func(t *testing.T) gsession.Storage{
		"memory": func(t *testing.T) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{UserKey: userKey, MaxLifetime: maxLifetime})
		},
		"file": func(t *testing.T) gsession.Storage {
			return newFile(t, gfsession.FileConfig{Path: t.TempDir(), UserKey: userKey, MaxLifetime: maxLifetime})
		},
		"db": func(t *testing.T) gsession.Storage {
			db := openTestDB(t, dbTestLink(t, "mysql"))
			return newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), UserKey: userKey, MaxLifetime: maxLifetime})
		},
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		storages[kind] = func(t *testing.T) gsession.Storage {
			return newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: userKey, MaxLifetime: maxLifetime})
		}
	}
	return storages
}

// TestStorage_LoginClearsThenRegenerates: the usual login handler of a site
// that guards against session fixation: it clears the visitor's anonymous
// session (RemoveAll), gives it a new id (RegenerateId) and stores the user.
// Nobody else touched the session: the new id must hold the user (a request
// that deletes its own session and then writes starts a new session, under
// whichever id it then has).
func TestStorage_LoginClearsThenRegenerates(t *testing.T) {
	for name, newStorage := range everyStorage(t, "uid", 0) {
		t.Run(name, func(t *testing.T) {
			m := gsession.New(time.Minute, newStorage(t))
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("cart", "3 items")) })

			login := hashRequest(m, id)
			require.Equal(t, "3 items", login.MustGet("cart").String()) // loads
			require.NoError(t, login.RemoveAll())
			newId, err := login.RegenerateId(true)
			require.NoError(t, err)
			require.NoError(t, login.Set("uid", "alice"))
			require.NoError(t, login.Close())

			redisReq(t, m, newId, func(s *gsession.Session) {
				assert.Equal(t, "alice", s.MustGet("uid").String(), "the login must be stored under the new id")
			})
		})
	}
}

// TestStorage_LogoutMessageThenRegenerate: a logout that clears the session,
// leaves a message and rotates the id (RemoveAll, Set, RegenerateId): the
// message must be under the new id.
func TestStorage_LogoutMessageThenRegenerate(t *testing.T) {
	for name, newStorage := range everyStorage(t, "uid", 0) {
		t.Run(name, func(t *testing.T) {
			m := gsession.New(time.Minute, newStorage(t))
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })

			logout := hashRequest(m, id)
			require.Equal(t, "alice", logout.MustGet("uid").String()) // loads
			require.NoError(t, logout.RemoveAll())
			require.NoError(t, logout.Set("flash", "logged out"))
			newId, err := logout.RegenerateId(true)
			require.NoError(t, err)
			require.NoError(t, logout.Close())

			data, err := m.GetStorage().GetSession(context.Background(), newId, time.Minute)
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"flash": "logged out"}, mapOf(data), "the message must be stored under the new id")
		})
	}
}

// TestStorage_GfSessionWrittenByTwo: two requests load a session that gf's
// own storage wrote (no creation time). Nobody deletes it. Last writer wins
// per session, and a Session closed, changed and closed again
// writes its own changes: each write below must be stored, none logged as a
// write of a deleted session. (The redis-hash variant of this is
// TestStorageRedisHash_GfHashWrittenByTwoThenClosedAgain.)
func TestStorage_GfSessionWrittenByTwo(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	type setup struct {
		storage gsession.Storage
		gf      gsession.Storage // gf's storage of the same backend
	}
	setups := map[string]func(t *testing.T) setup{
		"file": func(t *testing.T) setup {
			dir := t.TempDir()
			return setup{newFile(t, gfsession.FileConfig{Path: dir}), gsession.NewStorageFile(dir, time.Hour)}
		},
		"redis": func(t *testing.T) setup {
			prefix := redisTestPrefix()
			return setup{newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix}),
				gsession.NewStorageRedis(client, prefix)}
		},
	}
	for name, newSetup := range setups {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			su := newSetup(t)
			logs := captureLog(t)
			id := gfsession.NewSessionId()
			gfm := gsession.New(time.Hour, su.gf)
			redisReq(t, gfm, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

			m := gsession.New(time.Hour, su.storage)
			first := hashRequest(m, id)
			second := hashRequest(m, id)
			require.Equal(t, "ann", first.MustGet("user").String())
			require.Equal(t, "ann", second.MustGet("user").String())
			require.NoError(t, first.Set("a", 1))
			require.NoError(t, first.Close())
			time.Sleep(5 * time.Millisecond) // another millisecond
			require.NoError(t, second.Set("b", 2))
			require.NoError(t, second.Close())
			data, err := su.storage.GetSession(ctx, id, time.Hour)
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"user": "ann", "b": 2}, mapOf(data), "the last writer's view")

			require.NoError(t, first.Set("c", 3))
			require.NoError(t, first.Close())
			data, err = su.storage.GetSession(ctx, id, time.Hour)
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"user": "ann", "a": 1, "c": 3}, mapOf(data), "the last writer's view")
			assert.NotContains(t, logs(), "was deleted while a request", "nobody deleted the session")
		})
	}
}

// TestStorageDB_ErrorPrefix: every error of one storage starts with the same
// "gfsession: <type> storage:" prefix, whichever operation failed.
func TestStorageDB_ErrorPrefix(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, dbTestLink(t, "mysql"))
	table := testTable(t, db)
	st := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid"})
	id := gfsession.NewSessionId()
	require.NoError(t, st.SetSession(ctx, id, gmapOf(map[string]any{"a": 1}), time.Minute))
	_, err := db.Exec(ctx, "DROP TABLE "+table)
	require.NoError(t, err)

	writeErr := st.SetSession(ctx, id, gmapOf(map[string]any{"a": 2}), time.Minute)
	require.Error(t, writeErr)
	_, readErr := st.GetSession(ctx, id, time.Minute)
	require.Error(t, readErr)
	_, destroyErr := st.DestroyUser(ctx, "alice")
	require.Error(t, destroyErr)
	for name, err := range map[string]error{"SetSession": writeErr, "GetSession": readErr, "DestroyUser": destroyErr} {
		assert.Regexp(t, `^gfsession: db storage: `, err.Error(), "%s's error", name)
	}
}

// TestStorageFile_ErrorPrefix: as TestStorageDB_ErrorPrefix, for the file
// storage: an unencodable value and a file system error of SetSession.
func TestStorageFile_ErrorPrefix(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newFile(t, gfsession.FileConfig{Path: dir})
	id := gfsession.NewSessionId()
	encodeErr := st.SetSession(ctx, id, gmapOf(map[string]any{"c": make(chan int)}), time.Minute)
	require.Error(t, encodeErr)
	// The session's sub-folder replaced by a file: the write cannot create
	// its temporary file.
	require.NoError(t, st.SetSession(ctx, id, gmapOf(map[string]any{"a": 1}), time.Minute))
	files := sessionFiles(t, dir)
	require.Len(t, files, 1)
	sub := filepath.Dir(files[0])
	require.NoError(t, os.RemoveAll(sub))
	require.NoError(t, os.WriteFile(sub, nil, 0o600))
	fsErr := st.SetSession(ctx, id, gmapOf(map[string]any{"a": 2}), time.Minute)
	require.Error(t, fsErr)
	for name, err := range map[string]error{"encode": encodeErr, "file system": fsErr} {
		assert.Regexp(t, `^gfsession: file storage: `, err.Error(), "the %s error", name)
	}
}

func gmapOf(m map[string]any) *gmap.StrAnyMap { return gmap.NewStrAnyMapFrom(m, true) }
