package gfsession_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
	"github.com/goframe-contrib/gfsession/storagetest"
)

// redisStorage is what both Redis storages offer.
type redisStorage interface {
	gsession.Storage
	Close(ctx context.Context) error
}

// redisKinds are the two Redis backends, for table tests.
var redisKinds = []string{gfsession.TypeRedis, gfsession.TypeRedisHash}

// newRedisStorage creates a storage of `kind` on `client`, closed when the
// test ends.
func newRedisStorage(t *testing.T, kind string, client *gredis.Redis, config gfsession.RedisConfig) redisStorage {
	t.Helper()
	var (
		st  redisStorage
		err error
	)
	if kind == gfsession.TypeRedisHash {
		st, err = gfsession.NewStorageRedisHash(client, config)
	} else {
		st, err = gfsession.NewStorageRedis(client, config)
	}
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close(context.Background())) })
	return st
}

// newGredis creates a gredis client, closed when the test ends.
func newGredis(t *testing.T, config *gredis.Config) *gredis.Redis {
	t.Helper()
	client, err := gredis.New(config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	return client
}

// testPrefix returns a key prefix of its own for one test.
func redisTestPrefix() string {
	return "gfst:" + storagetest.NewId()[2:10] + ":"
}

// runRedisConformance runs storagetest on the backend `kind` through
// `client` (standalone, cluster or sentinel). `admin` adds the Admin
// subtests, which need gf's go-redis adapter.
func runRedisConformance(t *testing.T, kind string, client *gredis.Redis, admin bool) {
	prefix := redisTestPrefix()
	ctx := context.Background()
	newStorage := func(t *testing.T, config gfsession.RedisConfig) gsession.Storage {
		config.Prefix = prefix
		return newRedisStorage(t, kind, client, config)
	}
	opts := []storagetest.Option{
		storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
			return newStorage(t, gfsession.RedisConfig{MaxLifetime: d})
		}),
		storagetest.WithCryptoKeys(func(t *testing.T, keys [][]byte) gsession.Storage {
			return newStorage(t, gfsession.RedisConfig{CryptoKeys: keys})
		}),
		storagetest.WithCorrupter(func(t *testing.T, _ gsession.Storage, id string, data []byte) {
			if kind == gfsession.TypeRedisHash {
				_, err := client.Do(ctx, "HSET", prefix+gfsession.Handle(id), "corrupt", data)
				require.NoError(t, err)
				_, err = client.Do(ctx, "PEXPIRE", prefix+gfsession.Handle(id), 60000)
				require.NoError(t, err)
				return
			}
			_, err := client.Do(ctx, "SET", prefix+gfsession.Handle(id), data, "PX", 60000)
			require.NoError(t, err)
		}),
		storagetest.WithCopier(func(t *testing.T, _ gsession.Storage, from, to string) {
			// The key whole (a hash with every field), byte for byte.
			dump, err := client.Do(ctx, "DUMP", prefix+gfsession.Handle(from))
			require.NoError(t, err)
			require.False(t, dump.IsNil(), "no key to copy")
			_, err = client.Do(ctx, "RESTORE", prefix+gfsession.Handle(to), 60000, dump.Bytes(), "REPLACE")
			require.NoError(t, err)
		}),
		storagetest.RequireAll(),
	}
	if admin {
		opts = append(opts, storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
			// A prefix of its own, so that Count is exact.
			return newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: userKey})
		}))
	} else {
		opts = append(opts, storagetest.Excuse("Admin", "Count and Range need gf's go-redis adapter"))
	}
	if kind == gfsession.TypeRedisHash {
		opts = append(opts, storagetest.MergesKeys())
	}
	opts = append(opts, storagetest.DropsStaleWrites())
	storagetest.Run(t, func(t *testing.T) gsession.Storage {
		return newStorage(t, gfsession.RedisConfig{})
	}, opts...)
}

func TestStorageRedis_Conformance(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) { runRedisConformance(t, kind, client, true) })
	}
}

func TestStorageRedis_NilClient(t *testing.T) {
	_, err := gfsession.NewStorageRedis(nil)
	require.ErrorContains(t, err, "nil")
	_, err = gfsession.NewStorageRedisHash(nil)
	require.ErrorContains(t, err, "nil")
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	_, err = gfsession.NewStorageRedis(client, gfsession.RedisConfig{Codec: "xml"})
	require.ErrorContains(t, err, "codec")
	_, err = gfsession.NewStorageRedisHash(client, gfsession.RedisConfig{CryptoKeys: [][]byte{[]byte("short")}})
	require.Error(t, err)
	_, err = gfsession.NewStorageRedis(client, gfsession.RedisConfig{Prefix: "x:", NoPrefix: true})
	require.ErrorContains(t, err, "noPrefix")
}

// ---------------------------------------------------------------------------
// Commands per request, from INFO commandstats

// redisConnSetup are the commands a client sends when it opens a connection
// (go-redis: HELLO, CLIENT SETINFO) and the ones the test itself sends.
var redisConnSetup = map[string]bool{"hello": true, "client": true, "info": true, "config": true, "ping": true, "auth": true, "select": true}

// commandStats returns the calls per command since the last reset, leaving
// out redisConnSetup.
func redisCommandStats(t *testing.T, srv *testredis.Server) map[string]int {
	t.Helper()
	info, ok := srv.MustDo(t, "INFO", "commandstats").(string)
	require.True(t, ok)
	stats := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if redisConnSetup[strings.SplitN(name, "|", 2)[0]] {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if k, v, _ := strings.Cut(kv, "="); k == "calls" {
				n, err := strconv.Atoi(v)
				require.NoError(t, err)
				stats[name] = n
			}
		}
	}
	return stats
}

func redisResetStats(t *testing.T, srv *testredis.Server) {
	t.Helper()
	srv.MustDo(t, "CONFIG", "RESETSTAT")
}

// redisRoundTrips counts the round trips a go-redis client makes, as a
// go-redis hook: a command, a pipeline or a MULTI/EXEC transaction counts
// once.
type redisRoundTrips struct {
	calls atomic.Int64
}

func (c *redisRoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *redisRoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.calls.Add(1)
		return next(ctx, cmd)
	}
}

func (c *redisRoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.calls.Add(1)
		return next(ctx, cmds)
	}
}

// newRedisCountingClient returns a gredis client of its own on `addr` and
// the counter of its round trips.
func newRedisCountingClient(t *testing.T, addr string) (*gredis.Redis, *redisRoundTrips) {
	t.Helper()
	client := newGredis(t, &gredis.Config{Address: addr})
	raw, ok := client.GetAdapter().Client().(redis.UniversalClient)
	require.True(t, ok, "gf's go-redis adapter")
	counter := &redisRoundTrips{}
	raw.AddHook(counter)
	return client, counter
}

// redisOtherAdapter stands for a gredis adapter other than gf's go-redis
// one: it hides the go-redis client, so the storages can use nothing but
// gredis.Redis.Do (no pipelines, no transactions).
type redisOtherAdapter struct {
	gredis.Adapter
}

func (redisOtherAdapter) Client() gredis.RedisRawClient { return nil }

// newRedisOtherAdapterClient is newRedisCountingClient through
// redisOtherAdapter.
func newRedisOtherAdapterClient(t *testing.T, addr string) (*gredis.Redis, *redisRoundTrips) {
	t.Helper()
	inner, counter := newRedisCountingClient(t, addr)
	client, err := gredis.NewWithAdapter(redisOtherAdapter{Adapter: inner.GetAdapter()})
	require.NoError(t, err)
	return client, counter
}

func redisReq(t *testing.T, m *gsession.Manager, id string, fn func(s *gsession.Session)) {
	t.Helper()
	s := m.New(context.Background(), id)
	fn(s)
	require.NoError(t, s.Close())
}

func redisPTTL(t *testing.T, srv *testredis.Server, key string) int64 {
	t.Helper()
	v, ok := srv.MustDo(t, "PTTL", key).(int64)
	require.True(t, ok)
	return v
}

// TestStorageRedis_TTLRestartPeriod checks that a load restarts the idle TTL
// at most once per min(ttl/64, 1s) in a process, a write counting as a
// restart: loads in between read with no TTL change (GET, a lone HGETALL),
// the first load after it restarts the TTL again, and the key never has
// less TTL left than the last restart gave it.
func TestStorageRedis_TTLRestartPeriod(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	const (
		ttl    = 6400 * time.Millisecond
		period = ttl / 64
	)
	restarting := map[string]map[string]int{
		gfsession.TypeRedis:     {"getex": 1},
		gfsession.TypeRedisHash: {"hgetall": 1, "pexpire": 1},
	}
	leaving := map[string]map[string]int{
		gfsession.TypeRedis:     {"get": 1},
		gfsession.TypeRedisHash: {"hgetall": 1},
	}
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := redisTestPrefix()
			m := gsession.New(ttl, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix}))
			id := gfsession.NewSessionId()
			key := prefix + gfsession.Handle(id)
			// The write sets the TTL: it counts as a restart.
			restarted := time.Now()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			read := func() map[string]int {
				redisResetStats(t, srv)
				redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
				return redisCommandStats(t, srv)
			}
			for round := 0; ; round++ {
				require.Less(t, round, 10000, "no load restarted the TTL again")
				start := time.Now()
				got := read()
				if got["getex"]+got["pexpire"] > 0 {
					require.Equal(t, restarting[kind], got)
					assert.GreaterOrEqual(t, time.Since(restarted), period, "restarted again within the period")
					break
				}
				require.Equal(t, leaving[kind], got, "a load within the period")
				// The TTL the restart set, less the time since: never less.
				p := redisPTTL(t, srv, key)
				floor := (ttl - time.Since(restarted)).Milliseconds() - 1
				require.GreaterOrEqual(t, p, floor, "PTTL after a load within the period")
				if time.Since(start) > period {
					// A stalled machine: the next load may restart it.
					restarted = time.Now()
					require.Equal(t, restarting[kind], read())
				}
				time.Sleep(period / 10)
			}
			p := redisPTTL(t, srv, key)
			assert.True(t, p > (ttl-period).Milliseconds() && p <= ttl.Milliseconds(), "PTTL after a restart: %d", p)
		})
	}
}

func TestStorageRedis_CommandsPerRequest(t *testing.T) {
	srv := testredis.Start(t)
	client, counter := newRedisCountingClient(t, srv.Addr)
	prefix := redisTestPrefix()
	const ttl = time.Minute
	m := gsession.New(ttl, newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix}))
	id := gfsession.NewSessionId()
	key := prefix + gfsession.Handle(id)

	// Warm up the connection (HELLO etc. are not per request) and the
	// script of a loaded session's write (its first EVALSHA on a server is
	// answered NOSCRIPT and followed by EVAL).
	redisReq(t, m, id, func(s *gsession.Session) { _, _ = s.Get("x") })
	warm := gfsession.NewSessionId()
	redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("x", 1)) })
	redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("x", 2)) })
	redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })

	steps := []struct {
		name  string
		fn    func(s *gsession.Session)
		want  map[string]int // commands, those run by scripts included
		trips int64
	}{
		{"new session, never written", func(s *gsession.Session) {
			_, err := s.Id()
			require.NoError(t, err)
		}, map[string]int{}, 0},
		{"unknown id, read-only", func(s *gsession.Session) {
			v, err := s.Get("user")
			require.NoError(t, err)
			require.Nil(t, v)
		}, map[string]int{"getex": 1, "evalsha": 1, "exists": 1, "type": 1}, 2}, // the load, and the look for a session of gf's under the id
		{"first write", func(s *gsession.Session) {
			require.NoError(t, s.Set("user", "ann"))
			require.NoError(t, s.Set("n", 1))
		}, map[string]int{"getex": 1, "evalsha": 1, "exists": 1, "type": 1, "set": 1}, 3},
		// Less than refreshPeriod (min(ttl/64, 1s)) after the write before,
		// which set the TTL: the loads leave it alone (GET).
		{"read-only, 3 Gets", func(s *gsession.Session) {
			for i := 0; i < 3; i++ {
				assert.Equal(t, "ann", s.MustGet("user").String())
			}
		}, map[string]int{"get": 1}, 1},
		{"writing", func(s *gsession.Session) {
			assert.Equal(t, 1, s.MustGet("n").Int())
			require.NoError(t, s.Set("n", 2))
			require.NoError(t, s.Set("m", 3))
		}, map[string]int{"get": 1, "evalsha": 1, "getrange": 1, "set": 1}, 2}, // the script checks the header: still the session loaded
		{"emptied", func(s *gsession.Session) {
			require.NoError(t, s.Remove("user", "n", "m"))
		}, map[string]int{"get": 1, "del": 1}, 2},
	}
	for _, step := range steps {
		sid := id
		if step.name == "new session, never written" {
			sid = ""
		}
		redisResetStats(t, srv)
		before := counter.calls.Load()
		redisReq(t, m, sid, step.fn)
		got := redisCommandStats(t, srv)
		assert.Equal(t, step.want, got, step.name)
		assert.Equal(t, step.trips, counter.calls.Load()-before, "%s: round trips", step.name)
		t.Logf("redis, %s: %v", step.name, got)
		if step.name == "first write" || step.name == "writing" {
			p := redisPTTL(t, srv, key)
			assert.True(t, p > 0 && p <= ttl.Milliseconds(), "%s: PTTL %d", step.name, p)
		}
	}
	assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", key), "an emptied session must be deleted")
	assert.EqualValues(t, 0, srv.MustDo(t, "DBSIZE"), "a session never written must create no key")
}

func TestStorageRedis_SlidingTTL(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			// gf's sessionMaxAge of 200ms.
			const ttl = 200 * time.Millisecond
			prefix := redisTestPrefix()
			m := gsession.New(ttl, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix}))
			id := gfsession.NewSessionId()
			key := prefix + gfsession.Handle(id)
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			p := redisPTTL(t, srv, key)
			require.True(t, p > 0 && p <= ttl.Milliseconds(), "PTTL after write: %d", p)
			// Read-only requests every 50ms for 4 TTLs keep it alive. A read
			// is only required to find the session when it ended less than
			// a TTL after the previous read started (a stalled test machine
			// may leave longer gaps; those reads are not judged).
			var (
				prev    = time.Now()
				checked int
			)
			for deadline := time.Now().Add(4 * ttl); time.Now().Before(deadline); time.Sleep(ttl / 4) {
				start := time.Now()
				var user *gvar.Var
				redisReq(t, m, id, func(s *gsession.Session) { user = s.MustGet("user") })
				if time.Since(prev) < ttl {
					require.Equal(t, "ann", user.String(), "expired although read every %v", ttl/4)
					checked++
				} else if user.IsNil() {
					t.Logf("machine stalled for %v (> TTL): rewriting the session", time.Since(prev))
					redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
				}
				prev = start
				// Every read restarts the full TTL, in milliseconds.
				p := redisPTTL(t, srv, key)
				require.True(t, p > 0 && p <= ttl.Milliseconds(), "PTTL after a read: %d", p)
			}
			require.GreaterOrEqual(t, checked, 5, "too few reads could be judged")
			// Left alone, it expires on time: Redis expires the key exactly
			// after the TTL the last read set.
			last := time.Now()
			redisReq(t, m, id, func(s *gsession.Session) { require.Equal(t, "ann", s.MustGet("user").String()) })
			require.Eventually(t, func() bool { return srv.MustDo(t, "EXISTS", key) == int64(0) }, 10*ttl, 5*time.Millisecond)
			gone := time.Since(last)
			assert.GreaterOrEqual(t, gone, ttl, "expired before its TTL")
			t.Logf("gone %v after the last read", gone)
		})
	}
}

func TestStorageRedis_HostileIdsSendNothing(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			st := newRedisStorage(t, kind, client, gfsession.RedisConfig{})
			m := gsession.New(time.Minute, st)
			// Warm up the connection.
			_, err := st.GetSession(ctx, gfsession.NewSessionId(), time.Minute)
			require.NoError(t, err)
			redisResetStats(t, srv)
			for _, id := range storagetest.HostileIds {
				data, err := st.GetSession(ctx, id, time.Minute)
				require.NoError(t, err)
				require.Nil(t, data)
				require.Error(t, st.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Minute))
				require.NoError(t, st.RemoveAll(ctx, id))
				require.NoError(t, st.UpdateTTL(ctx, id, time.Minute))
				if id == "" {
					continue // gf gives a request without an id a new, valid one
				}
				s := m.New(ctx, id)
				_, _ = s.Get("k")
				_ = s.Set("k", "v")
				_ = s.Close()
			}
			assert.Empty(t, redisCommandStats(t, srv), "a hostile id reached Redis")
			assert.EqualValues(t, 0, srv.MustDo(t, "DBSIZE"))
		})
	}
}

// ---------------------------------------------------------------------------
// gf's own storages

func TestStorageRedis_ReadsGfStorageRedis(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	prefix := redisTestPrefix()
	gf := gsession.New(time.Minute, gsession.NewStorageRedis(client, prefix))
	ours := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix}))
	id := gfsession.NewSessionId()
	redisReq(t, gf, id, func(s *gsession.Session) {
		require.NoError(t, s.SetMap(map[string]any{"user": "ann", "n": 42, "roles": []string{"a", "b"}}))
	})
	redisReq(t, ours, id, func(s *gsession.Session) {
		assert.Equal(t, "ann", s.MustGet("user").String())
		assert.Equal(t, int64(42), s.MustGet("n").Val())
		assert.Equal(t, []string{"a", "b"}, s.MustGet("roles").Strings())
		require.NoError(t, s.Set("n", int64(43)))
	})
	// Rewritten in our format, with a millisecond TTL.
	redisReq(t, ours, id, func(s *gsession.Session) {
		assert.Equal(t, "ann", s.MustGet("user").String())
		assert.Equal(t, int64(43), s.MustGet("n").Val())
	})
	raw, ok := srv.MustDo(t, "GET", prefix+gfsession.Handle(id)).(string)
	require.True(t, ok)
	assert.NotEqual(t, byte('{'), raw[0], "our write replaces the JSON blob")
}

func TestStorageRedisHash_ReadsGfStorageRedisHashTable(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	prefix := redisTestPrefix()
	gf := gsession.New(time.Minute, gsession.NewStorageRedisHashTable(client, prefix))
	ours := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client, gfsession.RedisConfig{Prefix: prefix}))
	id := gfsession.NewSessionId()
	redisReq(t, gf, id, func(s *gsession.Session) {
		require.NoError(t, s.Set("user", "ann"))
		require.NoError(t, s.Set("n", 42))
	})
	redisReq(t, ours, id, func(s *gsession.Session) {
		assert.Equal(t, "ann", s.MustGet("user").Val())
		assert.Equal(t, "42", s.MustGet("n").Val(), "gf stored 42 as its string form")
		require.NoError(t, s.Set("n", 43))
	})
	redisReq(t, ours, id, func(s *gsession.Session) {
		assert.Equal(t, "ann", s.MustGet("user").Val(), "an untouched gf field stays readable")
		assert.Equal(t, 43, s.MustGet("n").Val(), "a rewritten field keeps its type")
	})
	p := redisPTTL(t, srv, prefix+gfsession.Handle(id))
	assert.True(t, p > 0 && p <= time.Minute.Milliseconds(), "PTTL %d", p)
}

// ---------------------------------------------------------------------------
// Config map

func TestStorageRedis_Config(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	group := "gfsession-test-" + storagetest.NewId()[2:10]
	// With timeouts: the storage uses the group's own client (see
	// TestStorageRedis_GroupTimeout for a group without).
	gredis.SetConfig(&gredis.Config{Address: srv.Addr, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second}, group)
	t.Cleanup(func() { gredis.RemoveConfig(group) })

	bad := []struct {
		name   string
		config map[string]any
		want   []string
	}{
		{"unknown key", map[string]any{"addres": srv.Addr}, []string{"sessionStorage.addres", "unknown key", "address", "prefix", "redis"}},
		{"bare number duration", map[string]any{"address": srv.Addr, "maxLifetime": 3600}, []string{"sessionStorage.maxLifetime", "unit"}},
		{"bare number redis timeout", map[string]any{"address": srv.Addr, "readTimeout": 5}, []string{"sessionStorage.readTimeout", "unit"}},
		{"group not configured", map[string]any{"redis": "no-such-group"}, []string{"sessionStorage.redis", `"no-such-group"`, "not configured"}},
		{"group and inline", map[string]any{"redis": group, "address": srv.Addr}, []string{"sessionStorage.redis", "not both", "address"}},
		{"no redis", map[string]any{"prefix": "x:"}, []string{"sessionStorage", `"redis"`, `"address"`}},
		{"group not a string", map[string]any{"redis": 1}, []string{"sessionStorage.redis"}},
		{"bad db", map[string]any{"address": srv.Addr, "db": "one"}, []string{"sessionStorage.db"}},
		{"bad crypto key", map[string]any{"address": srv.Addr, "cryptoKeys": []any{"c2hvcnQ="}}, []string{"sessionStorage.cryptoKeys"}},
		{"bad codec", map[string]any{"address": srv.Addr, "codec": "xml"}, []string{"codec", "xml"}},
	}
	for _, kind := range redisKinds {
		for _, tt := range bad {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				config := map[string]any{"type": kind}
				for k, v := range tt.config {
					config[k] = v
				}
				st, err := gfsession.New(ctx, config)
				require.Error(t, err)
				require.Nil(t, st)
				for _, w := range tt.want {
					assert.Contains(t, err.Error(), w)
				}
			})
		}
		t.Run(kind+"/inline address", func(t *testing.T) {
			prefix := redisTestPrefix()
			st, err := gfsession.New(ctx, map[string]any{
				"type": kind, "address": srv.Addr, "prefix": prefix, "maxLifetime": "1h",
				"dialTimeout": "500ms", "readTimeout": "1s",
			})
			require.NoError(t, err)
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
			assert.EqualValues(t, 1, srv.MustDo(t, "EXISTS", prefix+gfsession.Handle(id)))
			closer := st.(redisStorage)
			require.NoError(t, closer.Close(ctx))
			require.NoError(t, closer.Close(ctx), "Close is idempotent")
			_, err = st.GetSession(ctx, id, time.Minute)
			assert.Error(t, err, "Close closes the client the storage created")
		})
		t.Run(kind+"/userKey", func(t *testing.T) {
			prefix := redisTestPrefix()
			st, err := gfsession.New(ctx, map[string]any{
				"type": kind, "redis": group, "prefix": prefix, "userKey": "uid", "userIndexTTL": "2h",
			})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, st.(redisStorage).Close(ctx)) })
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("uid", 42)) })
			assert.InDelta(t, (2 * time.Hour).Milliseconds(), redisPTTL(t, srv, prefix+"user:42"), 5000)
			n, err := redisAdmin(t, st).DestroyUser(ctx, "42")
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			_, err = gfsession.New(ctx, map[string]any{"type": kind, "redis": group, "userIndexTTL": 3600})
			assert.ErrorContains(t, err, "sessionStorage.userIndexTTL")
			_, err = gfsession.New(ctx, map[string]any{"type": kind, "redis": group, "userIndexTTL": "-1h"})
			assert.ErrorContains(t, err, "userIndexTTL")
		})
		t.Run(kind+"/group", func(t *testing.T) {
			st, err := gfsession.New(ctx, map[string]any{"type": kind, "redis": group, "noPrefix": true})
			require.NoError(t, err)
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			assert.EqualValues(t, 1, srv.MustDo(t, "EXISTS", gfsession.Handle(id)), "noPrefix: the key is the bare handle")
			require.NoError(t, st.(redisStorage).Close(ctx))
			_, err = gredis.Instance(group).Do(ctx, "PING")
			assert.NoError(t, err, "Close must not close a group's shared client")
			_, err = st.GetSession(ctx, id, time.Minute)
			assert.NoError(t, err)
		})
	}
}

func TestStorageRedis_ServerConfig(t *testing.T) {
	// The `sessionStorage` node of gf's server config builds the storage.
	srv := testredis.Start(t)
	ctx := context.Background()
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			config, err := ghttp.ConfigFromMap(map[string]any{
				"address":       ":0",
				"sessionMaxAge": "1h",
				"sessionStorage": map[string]any{
					"type": kind, "address": srv.Addr, "prefix": redisTestPrefix(),
				},
			})
			require.NoError(t, err)
			st, ok := config.SessionStorage.(redisStorage)
			require.True(t, ok, "got %T", config.SessionStorage)
			t.Cleanup(func() { require.NoError(t, st.Close(ctx)) })
			m := gsession.New(config.SessionMaxAge, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
		})
	}
}

func TestStorageRedis_CloseLeavesCallersClient(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	for _, kind := range redisKinds {
		st := newRedisStorage(t, kind, client, gfsession.RedisConfig{})
		require.NoError(t, st.Close(ctx))
		require.NoError(t, st.Close(ctx), "Close is idempotent")
		_, err := st.GetSession(ctx, gfsession.NewSessionId(), time.Minute)
		require.NoError(t, err, "%s: Close must not close the caller's client", kind)
	}
}

func TestStorageRedis_RoundTripsVsGf(t *testing.T) {
	// Round trips per request, side by side with gf's built-in storages of
	// the same kind on the same server (gf's StorageRedis refreshes TTLs
	// from a 10 s timer, which is not counted here). Each storage has a
	// client of its own, whose round trips a go-redis hook counts.
	srv := testredis.Start(t)
	prefix := redisTestPrefix()
	newStorage := func(mk func(c *gredis.Redis) gsession.Storage) func() (gsession.Storage, *redisRoundTrips) {
		return func() (gsession.Storage, *redisRoundTrips) {
			client, counter := newRedisCountingClient(t, srv.Addr)
			return mk(client), counter
		}
	}
	storages := []struct {
		name string
		mk   func() (gsession.Storage, *redisRoundTrips)
	}{
		{"gf StorageRedis", newStorage(func(c *gredis.Redis) gsession.Storage { return gsession.NewStorageRedis(c, prefix+"gf:") })},
		{"gfsession redis", newStorage(func(c *gredis.Redis) gsession.Storage {
			return newRedisStorage(t, gfsession.TypeRedis, c, gfsession.RedisConfig{Prefix: prefix + "kv:"})
		})},
		{"gf StorageRedisHashTable", newStorage(func(c *gredis.Redis) gsession.Storage {
			return gsession.NewStorageRedisHashTable(c, prefix+"gfh:")
		})},
		{"gfsession redis-hash", newStorage(func(c *gredis.Redis) gsession.Storage {
			return newRedisStorage(t, gfsession.TypeRedisHash, c, gfsession.RedisConfig{Prefix: prefix + "h:"})
		})},
	}
	results := map[string][2]int64{}
	for _, s := range storages {
		st, counter := s.mk()
		m := gsession.New(time.Hour, st)
		id := gfsession.NewSessionId()
		redisReq(t, m, id, func(s *gsession.Session) {
			require.NoError(t, s.SetMap(map[string]any{"a": "1", "b": "2", "c": "3"}))
		})
		// Warm up the connection and the scripts (the first EVALSHA of a
		// script on a server is answered NOSCRIPT and followed by EVAL).
		redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("w", "1")) })
		redisResetStats(t, srv)
		before := counter.calls.Load()
		redisReq(t, m, id, func(s *gsession.Session) {
			for _, k := range []string{"a", "b", "c"} {
				require.Equal(t, "1", s.MustGet("a").String(), k)
			}
		})
		read, readStats := counter.calls.Load()-before, redisCommandStats(t, srv)
		redisResetStats(t, srv)
		before = counter.calls.Load()
		redisReq(t, m, id, func(s *gsession.Session) {
			for i, k := range []string{"a", "b", "c"} {
				_ = s.MustGet(k)
				require.NoError(t, s.Set(k, fmt.Sprint(i+10)))
			}
		})
		write, writeStats := counter.calls.Load()-before, redisCommandStats(t, srv)
		results[s.name] = [2]int64{read, write}
		t.Logf("%-26s read-only (3 Gets): %d round trips %v; writing (3 Gets, 3 Sets): %d round trips %v",
			s.name, read, readStats, write, writeStats)
	}
	for _, pair := range [][2]string{{"gfsession redis", "gf StorageRedis"}, {"gfsession redis-hash", "gf StorageRedisHashTable"}} {
		ours, gf := results[pair[0]], results[pair[1]]
		assert.LessOrEqual(t, ours[0], gf[0], "%s read-only vs %s", pair[0], pair[1])
		assert.LessOrEqual(t, ours[1], gf[1], "%s writing vs %s", pair[0], pair[1])
	}
	assert.Equal(t, [2]int64{1, 2}, results["gfsession redis"])
	assert.Equal(t, [2]int64{1, 2}, results["gfsession redis-hash"])
}

// ---------------------------------------------------------------------------
// Admin

func redisAdmin(t *testing.T, st gsession.Storage) gfsession.Admin {
	t.Helper()
	a, ok := st.(gfsession.Admin)
	require.True(t, ok, "%T does not implement Admin", st)
	return a
}

func TestStorageRedis_DestroyUser(t *testing.T) {
	// One user logged in from 5 clients, another from
	// 2; "log out everywhere" for the first ends its 5 sessions only.
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := redisTestPrefix()
			st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "userId"})
			a := redisAdmin(t, st)
			m := gsession.New(time.Hour, st)
			login := func(user any) string {
				// A client arrives anonymous, then logs in.
				id := gfsession.NewSessionId()
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("cart", []string{"book"})) })
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("userId", user)) })
				return id
			}
			var alice, bob []string
			for i := 0; i < 5; i++ {
				alice = append(alice, login("alice"))
			}
			for i := 0; i < 2; i++ {
				bob = append(bob, login(int64(7)))
			}
			assert.EqualValues(t, 5, srv.MustDo(t, "ZCARD", prefix+"user:alice"))
			assert.EqualValues(t, 2, srv.MustDo(t, "ZCARD", prefix+"user:7"))
			n, err := a.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 7, n, "user indexes are not sessions")

			n, err = a.DestroyUser(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, 5, n)
			for _, id := range alice {
				redisReq(t, m, id, func(s *gsession.Session) {
					assert.True(t, s.MustGet("userId").IsNil(), "alice's session %s survived", id)
					assert.True(t, s.MustGet("cart").IsNil())
				})
				assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", prefix+gfsession.Handle(id)))
			}
			for _, id := range bob {
				redisReq(t, m, id, func(s *gsession.Session) {
					assert.Equal(t, "7", s.MustGet("userId").String(), "bob's session was destroyed")
				})
			}
			assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", prefix+"user:alice"), "the emptied index is gone")
			if kind == gfsession.TypeRedisHash {
				// A request in flight during DestroyUser writes only what it
				// changed: it cannot log the user back in.
				id := login("alice")
				inFlight := m.New(ctx, id)
				assert.Equal(t, "alice", inFlight.MustGet("userId").String())
				n, err := a.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				require.Equal(t, 1, n)
				require.NoError(t, inFlight.Set("cart", []string{"pen"}))
				require.NoError(t, inFlight.Close())
				redisReq(t, m, id, func(s *gsession.Session) {
					assert.True(t, s.MustGet("userId").IsNil(), "a request in flight logged the user back in")
				})
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })
			}
			n, err = a.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 2, n)

			// Stale entries are dropped, not counted: a session of bob's
			// that switched user, one that RegenerateId moved, one deleted
			// by Destroy.
			redisReq(t, m, bob[0], func(s *gsession.Session) { require.NoError(t, s.Set("userId", "carol")) })
			var moved string
			redisReq(t, m, bob[1], func(s *gsession.Session) {
				var err error
				moved, err = s.RegenerateId(true)
				require.NoError(t, err)
			})
			third := login(int64(7))
			require.NoError(t, a.Destroy(ctx, third))
			if kind == gfsession.TypeRedis {
				// Writes never remove an entry (a concurrent request may
				// write the user back): bob[0]'s stays until DestroyUser.
				assert.EqualValues(t, 4, srv.MustDo(t, "ZCARD", prefix+"user:7"), "bob[0], bob[1], moved, third")
			} else {
				assert.EqualValues(t, 3, srv.MustDo(t, "ZCARD", prefix+"user:7"), "bob[1], moved, third")
			}
			n, err = a.DestroyUser(ctx, "7")
			require.NoError(t, err)
			assert.Equal(t, 1, n, "only the regenerated session still is bob's")
			assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", prefix+gfsession.Handle(moved)))
			assert.EqualValues(t, 1, srv.MustDo(t, "EXISTS", prefix+gfsession.Handle(bob[0])), "carol's session stays")
			assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", prefix+"user:7"))
		})
	}
}

func TestStorageRedis_UserIndexRoundTrips(t *testing.T) {
	// redis-hash: the user index costs a round trip only on the writes that
	// change the session's user; every other request costs what it costs
	// without it. redis on a single server: no round trip at all, the
	// write's script indexes the user the session names (every write of a
	// logged-in session runs index commands inside it).
	srv := testredis.Start(t)
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			type run struct {
				m       *gsession.Manager
				counter *redisRoundTrips
			}
			newRun := func(userKey string) run {
				client, counter := newRedisCountingClient(t, srv.Addr)
				st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: userKey})
				m := gsession.New(time.Hour, st)
				// Warm up the connection and the scripts.
				warm := gfsession.NewSessionId()
				redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "w")) })
				redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Remove("uid")) })
				redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "w")) })
				redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("x", 1)) }) // a loaded session's write
				n, err := redisAdmin(t, st).DestroyUser(context.Background(), "w")
				if userKey != "" {
					require.NoError(t, err)
					require.Equal(t, 1, n)
				}
				return run{m, counter}
			}
			plain, indexed := newRun(""), newRun("uid")
			steps := []struct {
				name    string
				fn      func(s *gsession.Session)
				extra   int64 // redis-hash
				indexKV bool  // redis: index commands in the write's script
			}{
				{"anonymous write", func(s *gsession.Session) { require.NoError(t, s.Set("cart", "x")) }, 0, false},
				{"login", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) }, 1, true},
				{"read-only", func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("uid").String()) }, 0, false},
				{"writing", func(s *gsession.Session) { require.NoError(t, s.Set("n", 1)) }, 0, true},
				{"same user set again", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) }, 0, true},
				{"switch user", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "bob")) }, 2, true},
				{"logout", func(s *gsession.Session) { require.NoError(t, s.Remove("uid")) }, 1, false},
				{"login again", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) }, 1, true},
				{"logout by RemoveAll", func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) }, 1, false},
			}
			plainId, indexedId := gfsession.NewSessionId(), gfsession.NewSessionId()
			for _, step := range steps {
				before := plain.counter.calls.Load()
				redisReq(t, plain.m, plainId, step.fn)
				base := plain.counter.calls.Load() - before

				redisResetStats(t, srv)
				before = indexed.counter.calls.Load()
				redisReq(t, indexed.m, indexedId, step.fn)
				got := indexed.counter.calls.Load() - before
				stats := redisCommandStats(t, srv)
				extra, index := step.extra, step.extra > 0
				if kind == gfsession.TypeRedis {
					extra, index = 0, step.indexKV
				}
				assert.Equal(t, base+extra, got, "%s: round trips with the user index (%d without)", step.name, base)
				t.Logf("%s, %s: %d round trips without the index, %d with; commandstats %v", kind, step.name, base, got, stats)
				if !index {
					for cmd := range stats {
						assert.False(t, strings.HasPrefix(cmd, "z"), "%s: index command %s", step.name, cmd)
					}
				}
			}

			// DestroyUser: one call to read the index, two per session (read
			// its user, delete it if unchanged), one to drop the entries.
			const clients = 5
			for i := 0; i < clients; i++ {
				redisReq(t, indexed.m, gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("uid", "eve")) })
			}
			before := indexed.counter.calls.Load()
			n, err := redisAdmin(t, indexed.m.GetStorage()).DestroyUser(context.Background(), "eve")
			require.NoError(t, err)
			require.Equal(t, clients, n)
			assert.EqualValues(t, 2+2*clients, indexed.counter.calls.Load()-before, "DestroyUser round trips")
		})
	}
}

func TestStorageRedis_UserIndexTTL(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			for _, tt := range []struct {
				name   string
				config gfsession.RedisConfig
				want   time.Duration
			}{
				{"default", gfsession.RedisConfig{}, gfsession.DefaultRedisUserIndexTTL},
				{"maxLifetime", gfsession.RedisConfig{MaxLifetime: 12 * time.Hour}, 12 * time.Hour},
				{"userIndexTTL", gfsession.RedisConfig{MaxLifetime: 12 * time.Hour, UserIndexTTL: 48 * time.Hour}, 48 * time.Hour},
			} {
				prefix := redisTestPrefix()
				tt.config.Prefix, tt.config.UserKey = prefix, "uid"
				m := gsession.New(time.Hour, newRedisStorage(t, kind, client, tt.config))
				redisReq(t, m, gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) })
				p := redisPTTL(t, srv, prefix+"user:ann")
				assert.InDelta(t, tt.want.Milliseconds(), p, 5000, "%s: PTTL of the user index", tt.name)
			}
			_, err := gfsession.NewStorageRedis(client, gfsession.RedisConfig{UserIndexTTL: -time.Second})
			assert.ErrorContains(t, err, "userIndexTTL")

			// Entries older than UserIndexTTL are trimmed by the next login:
			// an active user's index does not grow without bound.
			const indexTTL = 300 * time.Millisecond
			prefix := redisTestPrefix()
			m := gsession.New(time.Hour, newRedisStorage(t, kind, client,
				gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", UserIndexTTL: indexTTL}))
			first := gfsession.NewSessionId()
			redisReq(t, m, first, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) })
			require.Eventually(t, func() bool {
				redisReq(t, m, gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) })
				return srv.MustDo(t, "ZSCORE", prefix+"user:ann", first) == nil
			}, 20*indexTTL, indexTTL/6, "the first login was never trimmed")
			n, ok := srv.MustDo(t, "ZCARD", prefix+"user:ann").(int64)
			require.True(t, ok)
			assert.Less(t, n, int64(15), "logins older than the index TTL stay in the index")
			p := redisPTTL(t, srv, prefix+"user:ann")
			assert.True(t, p > 0 && p <= indexTTL.Milliseconds(), "PTTL %d", p)
		})
	}
}

func TestStorageRedis_RangeScans(t *testing.T) {
	// Count and Range use SCAN, never KEYS, and see only their own sessions:
	// not the user indexes, not the other kind's sessions, not keys under a
	// prefix that the unescaped glob would match.
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	const sessions = 1200 // more than two SCAN batches
	// Glob characters in the prefix are escaped: "x[ab]*?\:" would match
	// "xa..." unescaped.
	prefix := "gfst:" + storagetest.NewId()[2:8] + ":x[ab]*?\\:"
	decoy := strings.Replace(prefix, "x[ab]*?\\:", "xa-", 1)
	kv := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid"})
	hash := newRedisStorage(t, gfsession.TypeRedisHash, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid"})
	decoyKV := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: decoy})
	data := gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann"}, true)
	want := map[string]bool{}
	for i := 0; i < sessions; i++ {
		id := gfsession.NewSessionId()
		require.NoError(t, kv.SetSession(ctx, id, data, time.Hour))
		want[gfsession.Handle(id)] = true
		require.NoError(t, decoyKV.SetSession(ctx, gfsession.NewSessionId(), data, time.Hour))
	}
	hashIds := map[string]bool{}
	for i := 0; i < 3; i++ {
		id := gfsession.NewSessionId()
		require.NoError(t, hash.SetSession(ctx, id, data, time.Hour))
		hashIds[id] = true
	}
	// A key under the prefix that is no session id.
	srv.MustDo(t, "SET", prefix+"not.a.session", "x")

	dbsize := srv.MustDo(t, "DBSIZE")
	redisResetStats(t, srv)
	a := redisAdmin(t, kv)
	start := time.Now()
	n, err := a.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, sessions, n)
	t.Logf("Count of %d sessions among %d keys: %v", sessions, dbsize, time.Since(start))
	seen := map[string]bool{}
	require.NoError(t, a.Range(ctx, func(id string) bool {
		assert.False(t, seen[id], "Range visited %s twice", id)
		seen[id] = true
		return true
	}))
	assert.Equal(t, want, seen)
	stats := redisCommandStats(t, srv)
	assert.GreaterOrEqual(t, stats["scan"], 2*3, "several SCAN batches per pass")
	assert.Zero(t, stats["keys"], "KEYS was sent")
	delete(stats, "scan")
	assert.Empty(t, stats, "Count and Range send nothing but SCAN")
	t.Logf("Count + Range of %d sessions: %d SCAN calls", sessions, redisCommandStats(t, srv)["scan"])

	hn, err := redisAdmin(t, hash).Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(hashIds), hn, "the hash storage counts its hashes only")

	// Range stops when fn returns false, and on a cancelled context.
	calls := 0
	require.NoError(t, a.Range(ctx, func(string) bool { calls++; return calls < 10 }))
	assert.Equal(t, 10, calls)
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = a.Range(cctx, func(string) bool {
		if calls++; calls == 5 {
			cancel()
		}
		return true
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 5, calls, "Range went on after the context was cancelled")
}

// redisRawlessAdapter is a gredis adapter that does not expose a go-redis
// client.
type redisRawlessAdapter struct{ gredis.Adapter }

func (redisRawlessAdapter) Client() gredis.RedisRawClient { return nil }

func TestStorageRedis_AdminErrors(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	inner := newGredis(t, &gredis.Config{Address: srv.Addr})
	rawless, err := gredis.NewWithAdapter(redisRawlessAdapter{inner.GetAdapter()})
	require.NoError(t, err)
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			// Count and Range need gf's go-redis adapter; the rest does not.
			prefix := redisTestPrefix()
			st := newRedisStorage(t, kind, rawless, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid"})
			a := redisAdmin(t, st)
			_, err := a.Count(ctx)
			require.Error(t, err)
			assert.Equal(t, gcode.CodeNotSupported, gerror.Code(err))
			assert.ErrorContains(t, a.Range(ctx, func(string) bool { return true }), "go-redis adapter")
			m := gsession.New(time.Minute, st)
			redisReq(t, m, gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("uid", "ann")) })
			n, err := a.DestroyUser(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, 1, n)

			// Without a userKey, DestroyUser refuses.
			_, err = redisAdmin(t, newRedisStorage(t, kind, inner, gfsession.RedisConfig{Prefix: prefix})).DestroyUser(ctx, "ann")
			assert.Equal(t, gcode.CodeInvalidOperation, gerror.Code(err))
			assert.ErrorContains(t, err, "userKey")
		})
	}
	// Redis errors name the key: the index's, or the SCAN pattern.
	prefix := redisTestPrefix()
	down := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: down.Addr, DialTimeout: 500 * time.Millisecond})
	for _, kind := range redisKinds {
		a := redisAdmin(t, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid"}))
		if kind == gfsession.TypeRedis {
			down.Kill(t)
		}
		_, err := a.DestroyUser(ctx, "ann")
		assert.ErrorContains(t, err, prefix+"user:ann", kind)
		t.Logf("%s, DestroyUser on a dead server: %v", kind, err)
		_, err = a.Count(ctx)
		assert.ErrorContains(t, err, prefix+"*", kind)
		t.Logf("%s, Count on a dead server: %v", kind, err)
	}
}

// TestStorageRedis_OtherTypeUnderPrefix switches a site from one Redis
// storage to the other with the same prefix: a session of the other kind
// reads as no session (logged), without an error on every request, and the
// next login under that id works.
func TestStorageRedis_OtherTypeUnderPrefix(t *testing.T) {
	srv := testredis.Start(t)
	goRedis := newGredis(t, &gredis.Config{Address: srv.Addr})
	other, _ := newRedisOtherAdapterClient(t, srv.Addr)
	for _, c := range []struct {
		name         string
		client       *gredis.Redis
		before, read string
	}{
		{"hash reads kv", goRedis, gfsession.TypeRedis, gfsession.TypeRedisHash},
		{"hash reads kv, other adapter", other, gfsession.TypeRedis, gfsession.TypeRedisHash},
		{"kv reads hash", goRedis, gfsession.TypeRedisHash, gfsession.TypeRedis},
		{"kv reads hash, other adapter", other, gfsession.TypeRedisHash, gfsession.TypeRedis},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := redisTestPrefix()
			config := gfsession.RedisConfig{Prefix: prefix}
			before := gsession.New(time.Minute, newRedisStorage(t, c.before, c.client, config))
			after := gsession.New(time.Minute, newRedisStorage(t, c.read, c.client, config))
			id := gfsession.NewSessionId()
			redisReq(t, before, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

			s := after.New(context.Background(), id)
			v, err := s.Get("user")
			require.NoError(t, err, "a key of the other type must not fail every request")
			assert.True(t, v.IsNil())
			require.NoError(t, s.Set("user", "bob"))
			require.NoError(t, s.Close(), "the next login under the id must work")
			redisReq(t, after, id, func(s *gsession.Session) {
				assert.Equal(t, "bob", s.MustGet("user").String())
			})
		})
	}

	// A key of another kind that is no session is left alone.
	prefix := redisTestPrefix()
	hash := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, goRedis, gfsession.RedisConfig{Prefix: prefix}))
	str, list := gfsession.NewSessionId(), gfsession.NewSessionId()
	srv.MustDo(t, "SET", prefix+str, "not a session")
	srv.MustDo(t, "RPUSH", prefix+list, "a list")
	for _, id := range []string{str, list} {
		s := hash.New(context.Background(), id)
		v, err := s.Get("user")
		require.NoError(t, err)
		assert.True(t, v.IsNil())
	}
	assert.Equal(t, "not a session", srv.MustDo(t, "GET", prefix+str))
	assert.EqualValues(t, 1, srv.MustDo(t, "LLEN", prefix+list))
}

// redisReqCtx is a context of its own, as each ghttp request has.
func redisReqCtx() context.Context {
	return context.WithValue(context.Background(), redisReqCtxKey{}, gfsession.NewSessionId())
}

type redisReqCtxKey struct{}

// TestStorageRedis_UserIndexFollowsStored is a slow request that loaded a
// session logged in as alice and writes it back, whole, after a concurrent
// request logged the session out or switched it to bob: the slow write
// wins (last writer wins per session), so the session names alice again,
// and DestroyUser("alice") must destroy it. Through a client of gf's
// go-redis adapter (write and index in one script) and through another
// adapter (index after the write).
func TestStorageRedis_UserIndexFollowsStored(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	clients := map[string]func() *gredis.Redis{
		"go-redis": func() *gredis.Redis { return newGredis(t, &gredis.Config{Address: srv.Addr}) },
		"other adapter": func() *gredis.Redis {
			client, _ := newRedisOtherAdapterClient(t, srv.Addr)
			return client
		},
	}
	for clientName, newClient := range clients {
		for _, tt := range []struct {
			name  string
			other func(s *gsession.Session)
			then  string // the user stored by the concurrent request
		}{
			{"logout", func(s *gsession.Session) { require.NoError(t, s.Remove("uid")) }, ""},
			{"switch", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "bob")) }, "bob"},
		} {
			t.Run(clientName+"/"+tt.name, func(t *testing.T) {
				st := newRedisStorage(t, gfsession.TypeRedis, newClient(), gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "uid"})
				a := redisAdmin(t, st)
				m := gsession.New(time.Hour, st)
				id := gfsession.NewSessionId()
				login := m.New(redisReqCtx(), id)
				require.NoError(t, login.SetMap(map[string]any{"uid": "alice", "page": 1}))
				require.NoError(t, login.Close())

				slow := m.New(redisReqCtx(), id)
				require.Equal(t, "alice", slow.MustGet("uid").String())
				other := m.New(redisReqCtx(), id)
				tt.other(other)
				require.NoError(t, other.Close())
				if tt.then != "" {
					n, err := a.DestroyUser(ctx, "alice")
					require.NoError(t, err)
					require.Equal(t, 0, n, "the session names %s now", tt.then)
				}
				require.NoError(t, slow.Set("page", 2))
				require.NoError(t, slow.Close())

				stored, err := m.New(redisReqCtx(), id).Data()
				require.NoError(t, err)
				require.Equal(t, map[string]any{"uid": "alice", "page": 2}, stored, "the last writer wins")
				if tt.then != "" {
					n, err := a.DestroyUser(ctx, tt.then)
					require.NoError(t, err)
					assert.Equal(t, 0, n, "the session does not name %s any more", tt.then)
				}
				n, err := a.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				assert.Equal(t, 1, n, "a session stored as alice's escaped DestroyUser")
				stored, err = m.New(redisReqCtx(), id).Data()
				require.NoError(t, err)
				assert.Empty(t, stored)
			})
		}
	}
}

// TestStorageRedis_RemoveAllThenSetUnderFlood is gf's Session.RemoveAll,
// then Set, in one request while other requests remove many other sessions
// (each unknown id the middleware replaces removes one): the request's
// write starts a new session, however many removals came in between.
func TestStorageRedis_RemoveAllThenSetUnderFlood(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix()})
			removeAllThenSetUnderFlood(t, st)
		})
	}
}

// TestStorageRedis_NilData checks that SetSession refuses nil data with an
// error instead of a panic.
func TestStorageRedis_NilData(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	st := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: redisTestPrefix()})
	id := gfsession.NewSessionId()
	err := st.SetSession(context.Background(), id, nil, time.Minute)
	require.Error(t, err)
	assert.Equal(t, gcode.CodeInvalidParameter, gerror.Code(err))
	assert.NotContains(t, err.Error(), id)
}

// TestStorageRedis_StaleWriteLogShortensId checks that the line logged for
// a dropped stale write names the session by a shortened id only: ids are
// bearer tokens.
func TestStorageRedis_StaleWriteLogShortensId(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	st := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: redisTestPrefix()})
	staleWriteLogShortensId(t, st)
}

// TestStorageRedis_DestroyUserManySessions is "log out everywhere" for a
// user with more sessions than DestroyUser reads and deletes in one batch,
// some of which have since switched to another user: every session of the
// user goes, and only those.
func TestStorageRedis_DestroyUserManySessions(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "uid"})
			a := redisAdmin(t, st)
			ids := make([]string, 1234)
			for i := range ids {
				ids[i] = gfsession.NewSessionId()
				require.NoError(t, st.SetSession(ctx, ids[i], gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann"}, true), time.Hour))
			}
			for _, id := range ids[:100] {
				data, err := st.GetSession(ctx, id, time.Hour)
				require.NoError(t, err)
				data.Set("uid", "bob")
				require.NoError(t, st.SetSession(ctx, id, data, time.Hour))
			}
			n, err := a.DestroyUser(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, 1134, n)
			n, err = a.DestroyUser(ctx, "ann")
			require.NoError(t, err)
			assert.Equal(t, 0, n)
			n, err = a.DestroyUser(ctx, "bob")
			require.NoError(t, err)
			assert.Equal(t, 100, n)
			n, err = a.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 0, n)
		})
	}
}
