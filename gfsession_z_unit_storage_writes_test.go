package gfsession_test

import (
	"context"
	"reflect"
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

// TestStorageRedisHash_FreshMapMergedThenClosedAgain: two requests carry an
// id the storage does not hold (both start fresh maps). The first creates
// the session; the second adds its key to it (the hash keeps the first
// one's creation time). When the second request's Session is changed and
// closed again, its further write must be stored: nobody deleted or
// replaced the session. memory and the sealed hash storage keep the stored
// creation time for the next write of the map; the plain hash storage must
// too, whichever way it writes (a transaction through gf's go-redis
// adapter, the script through another adapter).
func TestStorageRedisHash_FreshMapMergedThenClosedAgain(t *testing.T) {
	srv := testredis.Start(t)
	type setup struct {
		name   string
		client func(t *testing.T) *gredis.Redis
		keys   bool
	}
	goRedis := func(t *testing.T) *gredis.Redis { return newGredis(t, &gredis.Config{Address: srv.Addr}) }
	other := func(t *testing.T) *gredis.Redis {
		c, _ := newRedisOtherAdapterClient(t, srv.Addr)
		return c
	}
	for _, c := range []setup{
		{"go-redis adapter", goRedis, false},
		{"other adapter", other, false},
		{"sealed", goRedis, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			config := gfsession.RedisConfig{Prefix: redisTestPrefix()}
			if c.keys {
				config.CryptoKeys = [][]byte{hashTestKey(t)}
			}
			m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, c.client(t), config))
			freshMapMergedThenClosedAgain(t, m)
		})
	}
	t.Run("memory", func(t *testing.T) {
		freshMapMergedThenClosedAgain(t, gsession.New(time.Minute, newMemory(t)))
	})
}

func freshMapMergedThenClosedAgain(t *testing.T, m *gsession.Manager) {
	t.Helper()
	logs := captureLog(t)
	id := gfsession.NewSessionId()
	first := hashRequest(m, id)
	second := hashRequest(m, id)
	require.NoError(t, first.Set("a", 1))  // loads: no session
	require.NoError(t, second.Set("b", 2)) // loads: no session
	require.NoError(t, first.Close())
	time.Sleep(5 * time.Millisecond) // another creation time, in milliseconds
	require.NoError(t, second.Close())
	require.NoError(t, second.Set("c", 3))
	require.NoError(t, second.Close())
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"a": 1, "b": 2, "c": 3}, data,
			"the second Close of a Session whose session nobody deleted must be stored")
	})
	assert.NotContains(t, logs(), "was deleted while a request", "no stale write")
}

// mapOf returns the data of a loaded session, nil for none.
func mapOf(m *gmap.StrAnyMap) map[string]any {
	if m == nil {
		return nil
	}
	return m.Map()
}

// TestStorage_RegenerateAfterDestroyUser: a request loads a session of
// alice; "log out everywhere" (DestroyUser) deletes it while the request
// runs; the request then rotates the session's id (Regenerate, at a change
// of privileges). The session was deleted while a request that loaded it
// ran, so that request's write is dropped: alice must not stay logged in
// under the new id.
func TestStorage_RegenerateAfterDestroyUser(t *testing.T) {
	for name, newStorage := range everyStorage(t, "uid", 0) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := newStorage(t)
			admin := st.(gfsession.Admin)
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) {
				require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "role": "user"}))
			})

			step := hashRequest(m, id)
			require.Equal(t, "alice", step.MustGet("uid").String()) // loads
			n, err := admin.DestroyUser(ctx, "alice")
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.NoError(t, step.Set("role", "admin"))
			newId, err := step.RegenerateId(true)
			require.NoError(t, err)
			require.NoError(t, step.Close())

			data, err := st.GetSession(ctx, newId, time.Minute)
			require.NoError(t, err)
			assert.Empty(t, mapOf(data), "a session deleted while the request ran stays deleted, under any id")
		})
	}
}

// TestStorageRedis_MethodsOnPointer: the Redis storages are used through
// the pointers their constructors return; their methods are the pointer's,
// as for every storage of the package: the value types have none.
func TestStorageRedis_MethodsOnPointer(t *testing.T) {
	for _, v := range []any{gfsession.StorageRedis{}, gfsession.StorageRedisHash{}, gfsession.StorageMemory{}} {
		typ := reflect.TypeOf(v)
		var names []string
		for i := 0; i < typ.NumMethod(); i++ {
			names = append(names, typ.Method(i).Name)
		}
		assert.Empty(t, names, "methods of the value type %v", typ)
	}
}

// TestStorageRedisHash_GfHashWrittenByTwoThenClosedAgain: two requests load
// a session that gf's StorageRedisHashTable wrote (a hash without the
// creation time field); the first write stores a creation time, the second
// keeps it. When the second request's Session is changed and closed again,
// its further write must be stored: the session is the one it loaded and
// wrote.
func TestStorageRedisHash_GfHashWrittenByTwoThenClosedAgain(t *testing.T) {
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix})
	logs := captureLog(t)
	id := gfsession.NewSessionId()
	srv.MustDo(t, "HSET", prefix+id, "user", "ann")
	srv.MustDo(t, "PEXPIRE", prefix+id, "60000")
	first := hashRequest(m, id)
	second := hashRequest(m, id)
	require.Equal(t, "ann", first.MustGet("user").String())
	require.Equal(t, "ann", second.MustGet("user").String())
	require.NoError(t, first.Set("a", 1))
	require.NoError(t, first.Close())
	time.Sleep(5 * time.Millisecond) // another creation time, in milliseconds
	require.NoError(t, second.Set("b", 2))
	require.NoError(t, second.Close())
	require.NoError(t, second.Set("c", 3))
	require.NoError(t, second.Close())
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"user": "ann", "a": 1, "b": 2, "c": 3}, data,
			"the second Close of a Session whose session nobody deleted must be stored")
	})
	assert.NotContains(t, logs(), "was deleted while a request", "no stale write")
}

// TestStorage_PastCapWriteKeepsNewSession: a request loads a session near
// the end of its MaxLifetime; while it runs, another request logs the
// session out and leaves a message (a new session under the id). The first
// request then writes after the lifetime of the session it loaded has run
// out: its write is dropped, and the new session must survive it.
func TestStorage_PastCapWriteKeepsNewSession(t *testing.T) {
	const lifetime = time.Second
	for name, newStorage := range everyStorage(t, "", lifetime) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := gsession.New(time.Minute, newStorage(t))
			id := gfsession.NewSessionId()
			start := time.Now()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

			late := hashRequest(m, id)
			require.Equal(t, "ann", late.MustGet("user").String()) // loads
			// The new session starts well after the old one, so it is
			// still within its own lifetime when the old one's has ended.
			waitUntil(start.Add(lifetime / 2))
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("flash", "logged out")) })
			waitUntil(start.Add(lifetime + 50*time.Millisecond))
			require.NoError(t, late.Set("n", 2))
			require.NoError(t, late.Close())

			redisReq(t, m, id, func(s *gsession.Session) {
				data, err := s.Data()
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"flash": "logged out"}, data,
					"a write past the lifetime of the session it loaded must not touch the new session")
			})
			require.Less(t, time.Since(start), lifetime*3/2, "the machine was too slow for the new session to be checked within its lifetime")
		})
	}
}

// waitUntil returns at `t`: the test needs a session's lifetime to pass.
func waitUntil(t time.Time) {
	time.Sleep(time.Until(t))
}
