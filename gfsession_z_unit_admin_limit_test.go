package gfsession_test

import (
	"context"
	"sync"
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

// limitedStorages returns, per backend, a constructor of several storages
// sharing one backend (one folder, table or prefix; memory has one
// storage), each with userKey "uid" and maxSessionsPerUser `max`.
func limitedStorages(t *testing.T, max int) map[string]func(t *testing.T) []gsession.Storage {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	backends := map[string]func(t *testing.T) []gsession.Storage{
		"memory": func(t *testing.T) []gsession.Storage {
			return []gsession.Storage{newMemory(t, gfsession.MemoryConfig{UserKey: "uid", MaxSessionsPerUser: max})}
		},
		"file": func(t *testing.T) []gsession.Storage {
			dir := t.TempDir()
			var list []gsession.Storage
			for i := 0; i < 3; i++ {
				list = append(list, newFile(t, gfsession.FileConfig{Path: dir, UserKey: "uid", MaxSessionsPerUser: max}))
			}
			return list
		},
	}
	for _, dialect := range dbDialects {
		backends["db/"+dialect] = func(t *testing.T) []gsession.Storage {
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			var list []gsession.Storage
			for i := 0; i < 3; i++ {
				list = append(list, newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxSessionsPerUser: max, CleanupInterval: -1}))
			}
			return list
		}
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		backends[kind] = func(t *testing.T) []gsession.Storage {
			return redisLimitedStorages(t, kind, client, max)
		}
	}
	return backends
}

// redisLimitedStorages returns three storages of `kind` on `client` sharing
// one prefix, with maxSessionsPerUser `max`.
func redisLimitedStorages(t *testing.T, kind string, client *gredis.Redis, max int) []gsession.Storage {
	prefix := redisTestPrefix()
	var list []gsession.Storage
	for i := 0; i < 3; i++ {
		list = append(list, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", MaxSessionsPerUser: max}))
	}
	return list
}

// liveOf returns the ids among `ids` whose session `st` holds for `user`.
func liveOf(t *testing.T, st gsession.Storage, user string, ids []string) []string {
	t.Helper()
	var live []string
	for _, id := range ids {
		data, err := st.GetSession(context.Background(), id, time.Hour)
		require.NoError(t, err)
		if data != nil && data.Get("uid") == user {
			live = append(live, id)
		}
	}
	return live
}

// TestSessionLimit_OneLoginPerAccount: with maxSessionsPerUser 1, a login
// signs out the user's other session on every storage, and leaves other
// users and anonymous sessions alone.
func TestSessionLimit_OneLoginPerAccount(t *testing.T) {
	for name, newStorages := range limitedStorages(t, 1) {
		t.Run(name, func(t *testing.T) {
			storages := newStorages(t)
			first, second := gsession.New(time.Hour, storages[0]), gsession.New(time.Hour, storages[len(storages)-1])
			phone, laptop, bob, anon := gfsession.NewSessionId(), gfsession.NewSessionId(), gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, first, bob, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "bob")) })
			redisReq(t, first, anon, func(s *gsession.Session) { require.NoError(t, s.Set("cart", 1)) })
			redisReq(t, first, phone, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			assert.Equal(t, []string{phone}, liveOf(t, storages[0], "alice", []string{phone}))

			// The laptop logs in (after an anonymous visit): the phone is
			// signed out. Stores keep times in milliseconds: the clock
			// moves on first, so that the laptop is the more recent.
			waitClock(t, 2*time.Millisecond)
			redisReq(t, second, laptop, func(s *gsession.Session) { require.NoError(t, s.Set("cart", 2)) })
			redisReq(t, second, laptop, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			assert.Equal(t, []string{laptop}, liveOf(t, storages[0], "alice", []string{phone, laptop}), "one login per account")
			assert.Equal(t, []string{bob}, liveOf(t, storages[0], "bob", []string{bob}), "another user was signed out")
			data, err := storages[0].GetSession(context.Background(), anon, time.Hour)
			require.NoError(t, err)
			assert.NotNil(t, data, "an anonymous session was destroyed")

			// A write that leaves the user alone is no login: nothing more.
			redisReq(t, second, laptop, func(s *gsession.Session) { require.NoError(t, s.Set("page", 3)) })
			assert.Equal(t, []string{laptop}, liveOf(t, storages[0], "alice", []string{laptop}))
		})
	}
}

// TestSessionLimit_ConcurrentLogins logs one user in 20 times at once,
// through several storages sharing one backend, with maxSessionsPerUser 2:
// exactly 2 sessions are left, and the user's listing agrees.
func TestSessionLimit_ConcurrentLogins(t *testing.T) {
	for name, newStorages := range limitedStorages(t, 2) {
		t.Run(name, func(t *testing.T) { concurrentLogins(t, newStorages(t), 2) })
	}
}

// concurrentLogins logs user "alice" in 20 times at once through
// `storages` in turn and checks that `max` sessions are left.
func concurrentLogins(t *testing.T, storages []gsession.Storage, max int) {
	const logins = 20
	var (
		ids   = make([]string, logins)
		start = make(chan struct{})
		wg    sync.WaitGroup
	)
	for i := range ids {
		ids[i] = gfsession.NewSessionId()
		m := gsession.New(time.Hour, storages[i%len(storages)])
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			<-start
			s := m.New(redisReqCtx(), id)
			assert.NoError(t, s.Set("uid", "alice"))
			assert.NoError(t, s.Close())
		}(ids[i])
	}
	close(start)
	wg.Wait()
	assert.Len(t, liveOf(t, storages[0], "alice", ids), max, "live sessions after %d concurrent logins", logins)
	list, err := storages[0].(gfsession.Admin).Sessions(context.Background(), "alice")
	require.NoError(t, err)
	assert.Len(t, list, max, "Sessions")
}

// TestSessionLimit_RedisRoundTrips counts Redis round trips with
// maxSessionsPerUser and clientInfo on: a read-only request still costs
// one, and a login that leaves the user within the limit costs one more
// than without the limit (the user index, read to find there is nothing to
// do). Through another gredis adapter (no pipelines) the limit still holds.
func TestSessionLimit_RedisRoundTrips(t *testing.T) {
	srv := testredis.Start(t)
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		t.Run(kind, func(t *testing.T) {
			trips := func(max int) (readOnly, login int64) {
				client, counter := newRedisCountingClient(t, srv.Addr)
				st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "uid", MaxSessionsPerUser: max, ClientInfo: true})
				m := gsession.New(time.Hour, st)
				// Warm up the connection and the scripts.
				for i := 0; i < 2; i++ {
					warm := gfsession.NewSessionId()
					redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "warm")) })
					redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("n", i)) })
				}
				first := gfsession.NewSessionId()
				redisReq(t, m, first, func(s *gsession.Session) { require.NoError(t, s.Set("cart", 1)) })
				before := counter.calls.Load()
				redisReq(t, m, first, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
				login = counter.calls.Load() - before
				before = counter.calls.Load()
				redisReq(t, m, first, func(s *gsession.Session) { require.Equal(t, "alice", s.MustGet("uid").String()) })
				return counter.calls.Load() - before, login
			}
			readOnly, limited := trips(2)
			_, unlimited := trips(0)
			assert.EqualValues(t, 1, readOnly, "a read-only request")
			assert.Equal(t, unlimited+1, limited, "a login within the limit: one more round trip")
		})
		t.Run(kind+"/other adapter", func(t *testing.T) {
			var storages []gsession.Storage
			prefix := redisTestPrefix()
			for i := 0; i < 3; i++ {
				client, _ := newRedisOtherAdapterClient(t, srv.Addr)
				storages = append(storages, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", MaxSessionsPerUser: 2}))
			}
			concurrentLogins(t, storages, 2)
		})
	}
}

// TestSessionLimit_PushedOutStaysOut: a login whose own session the limit
// destroys (another session of the user is more recently active: here one
// written with a longer TTL) cannot bring it back by writing its Session
// again.
func TestSessionLimit_PushedOutStaysOut(t *testing.T) {
	for name, newStorages := range limitedStorages(t, 1) {
		if name == "file" {
			continue // its order is the file's time, which a longer TTL does not move
		}
		t.Run(name, func(t *testing.T) {
			st := newStorages(t)[0]
			ctx := context.Background()
			recent := gfsession.NewSessionId()
			require.NoError(t, st.SetSession(ctx, recent, gmap.NewStrAnyMapFrom(map[string]any{"uid": "alice"}, true), 10*time.Hour))
			m := gsession.New(time.Hour, st)
			login := gfsession.NewSessionId()
			s := m.New(redisReqCtx(), login)
			require.NoError(t, s.Set("uid", "alice"))
			require.NoError(t, s.Close())
			assert.Empty(t, liveOf(t, st, "alice", []string{login}), "the login was not pushed out")
			require.NoError(t, s.Set("page", 2))
			require.NoError(t, s.Close())
			assert.Empty(t, liveOf(t, st, "alice", []string{login}), "a session the limit destroyed came back")
			assert.Equal(t, []string{recent}, liveOf(t, st, "alice", []string{recent}))
		})
	}
}

// waitClock returns once the clock has moved on by more than `d`: stores
// keep times in milliseconds, and a test that needs one session to be more
// recent than another waits for the clock, not for an event.
func waitClock(t *testing.T, d time.Duration) {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool { return time.Since(start) > d }, d+time.Second, time.Millisecond)
}
