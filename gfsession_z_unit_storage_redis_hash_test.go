package gfsession_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// redisHashCmds are the commands the hash storage sends (in pipelines,
// transactions and scripts) on a session's requests.
var redisHashCmds = map[string]bool{
	"hgetall": true, "hget": true, "hset": true, "hsetnx": true, "hdel": true, "hlen": true,
	"pexpire": true, "del": true, "multi": true, "exec": true, "evalsha": true,
	"exists": true, // the write script's check that a loaded session still exists
	"type":   true, // the look for a session of gf's under the id, on a miss
}

func TestStorageRedisHash_RoundTripsPerRequest(t *testing.T) {
	srv := testredis.Start(t)
	for _, adapter := range []struct {
		name    string
		client  func(t *testing.T, addr string) (*gredis.Redis, *redisRoundTrips)
		scripts bool // every load and write is a script
	}{
		{"go-redis adapter", newRedisCountingClient, false},
		{"other adapter", newRedisOtherAdapterClient, true},
	} {
		t.Run(adapter.name, func(t *testing.T) {
			client, counter := adapter.client(t, srv.Addr)
			prefix := redisTestPrefix()
			const ttl = time.Minute
			m := gsession.New(ttl, newRedisStorage(t, gfsession.TypeRedisHash, client, gfsession.RedisConfig{Prefix: prefix}))

			// Warm up: the connection, and the scripts (the first EVALSHA of
			// a script on a server is answered NOSCRIPT and followed by EVAL).
			warm := gfsession.NewSessionId()
			redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("x", 1)) })
			redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Set("y", 2)) })
			redisReq(t, m, warm, func(s *gsession.Session) { require.NoError(t, s.Remove("x", "y")) })

			id := gfsession.NewSessionId()
			key := prefix + gfsession.Handle(id)
			steps := []struct {
				name       string
				id         string
				fn         func(s *gsession.Session)
				roundTrips int
				scripts    int      // EVALSHA calls through gf's go-redis adapter
				without    []string // commands the step must not send
			}{
				{"new session, never written", "", func(s *gsession.Session) {
					_, err := s.Id()
					require.NoError(t, err)
				}, 0, 0, nil},
				{"unknown id, read-only", id, func(s *gsession.Session) {
					v, err := s.Get("user")
					require.NoError(t, err)
					require.Nil(t, v)
				}, 2, 1, nil}, // the load, and the look for a session of gf's under the id
				{"first write, 2 keys", id, func(s *gsession.Session) {
					require.NoError(t, s.Set("user", "ann"))
					require.NoError(t, s.Set("n", 1))
				}, 3, 1, nil},
				{"read-only, 10 Gets", id, func(s *gsession.Session) {
					for i := 0; i < 10; i++ {
						assert.Equal(t, "ann", s.MustGet("user").String())
					}
				}, 1, 0, nil},
				{"writing, 20 Sets and a Remove", id, func(s *gsession.Session) {
					assert.Equal(t, 1, s.MustGet("n").Int())
					for i := 0; i < 20; i++ {
						require.NoError(t, s.Set(fmt.Sprintf("k%02d", i), i))
					}
					require.NoError(t, s.Remove("n"))
				}, 2, 1, nil}, // a loaded session's write is the script: it checks the session is still the one loaded
				{"writing, Sets only", id, func(s *gsession.Session) {
					assert.Equal(t, "ann", s.MustGet("user").String())
					require.NoError(t, s.Set("k00", 100))
					require.NoError(t, s.Set("k01", 101))
				}, 2, 1, []string{"hlen", "hsetnx", "del"}}, // the short script: check, HSET, PEXPIRE
				{"Set of an unchanged value", id, func(s *gsession.Session) {
					require.NoError(t, s.Set("user", "ann"))
				}, 1, 0, nil},
				{"emptied", id, func(s *gsession.Session) {
					data, err := s.Data()
					require.NoError(t, err)
					for k := range data {
						require.NoError(t, s.Remove(k))
					}
				}, 2, 1, nil},
			}
			for _, step := range steps {
				redisResetStats(t, srv)
				before := counter.calls.Load()
				redisReq(t, m, step.id, step.fn)
				stats := redisCommandStats(t, srv)
				got := int(counter.calls.Load() - before)
				assert.Equal(t, step.roundTrips, got, "%s: round trips", step.name)
				scripts := step.scripts
				if adapter.scripts {
					scripts = step.roundTrips
				}
				assert.Equal(t, scripts, stats["evalsha"], "%s: EVALSHA calls", step.name)
				for cmd := range stats {
					assert.True(t, redisHashCmds[cmd], "%s: unexpected command %s", step.name, cmd)
				}
				for _, cmd := range step.without {
					assert.Zero(t, stats[cmd], "%s: %s sent", step.name, cmd)
				}
				t.Logf("redis-hash, %s: %d round trip(s); commandstats %v", step.name, got, stats)
				if step.name == "first write, 2 keys" || strings.HasPrefix(step.name, "writing") {
					p := redisPTTL(t, srv, key)
					assert.True(t, p > 0 && p <= ttl.Milliseconds(), "%s: PTTL %d", step.name, p)
				}
			}
			assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", key), "an emptied session must be deleted")
			assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", prefix+gfsession.Handle(warm)), "an emptied session must be deleted")
		})
	}
	assert.EqualValues(t, 0, srv.MustDo(t, "DBSIZE"), "a session never written must create no key")
}

// TestStorageRedis_OtherAdapter runs the conformance suite through a gredis
// adapter other than gf's go-redis one, where the storages use nothing but
// gredis.Redis.Do (redis-hash: Lua scripts instead of pipelines and
// transactions).
func TestStorageRedis_OtherAdapter(t *testing.T) {
	srv := testredis.Start(t)
	client, _ := newRedisOtherAdapterClient(t, srv.Addr)
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) { runRedisConformance(t, kind, client, false) })
	}
}

func TestStorageRedisHash_ReservedField(t *testing.T) {
	const lifetime = 500 * time.Millisecond
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix, MaxLifetime: lifetime})
	id := gfsession.NewSessionId()
	key := prefix + gfsession.Handle(id)
	start := time.Now()
	redisReq(t, m, id, func(s *gsession.Session) {
		// Keys that look like the reserved field must not touch it.
		require.NoError(t, s.Set("\x00created", "user value"))
		require.NoError(t, s.Set("\x00", 1))
		require.NoError(t, s.Set("created", 2))
	})
	fields, ok := srv.MustDo(t, "HGETALL", key).([]any)
	require.True(t, ok)
	raw := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		raw[fields[i].(string)] = fields[i+1].(string)
	}
	created, err := strconv.ParseInt(raw["\x00created"], 10, 64)
	require.NoError(t, err, "the reserved field holds the creation time in ms")
	assert.InDelta(t, start.UnixMilli(), created, 1000)
	assert.Contains(t, raw, "\x00\x00created", "a key starting with NUL is escaped")
	assert.Contains(t, raw, "\x00\x00")
	redisReq(t, m, id, func(s *gsession.Session) {
		assert.Equal(t, "user value", s.MustGet("\x00created").String())
		assert.Equal(t, 1, s.MustGet("\x00").Int())
		assert.Equal(t, 2, s.MustGet("created").Int())
		data, err := s.Data()
		require.NoError(t, err)
		assert.Len(t, data, 3, "the reserved field is not a session key")
	})
	// The TTL is capped by what is left of MaxLifetime.
	p := redisPTTL(t, srv, key)
	assert.True(t, p > 0 && p <= lifetime.Milliseconds(), "PTTL %d not capped by maxLifetime", p)
}

func TestStorageRedisHash_InPlaceChange(t *testing.T) {
	_, m := newRedisHashManager(t, gfsession.RedisConfig{})
	id := gfsession.NewSessionId()
	redisReq(t, m, id, func(s *gsession.Session) {
		require.NoError(t, s.Set("cart", map[string]any{"a": 1}))
		require.NoError(t, s.Set("list", []any{"x"}))
	})
	redisReq(t, m, id, func(s *gsession.Session) {
		cart := s.MustGet("cart").Val().(map[string]any)
		cart["b"] = 2 // changed in place, then set again
		require.NoError(t, s.Set("cart", cart))
		list := s.MustGet("list").Val().([]any)
		list[0] = "y"
		require.NoError(t, s.Set("list", list))
	})
	redisReq(t, m, id, func(s *gsession.Session) {
		assert.Equal(t, map[string]any{"a": 1, "b": 2}, s.MustGet("cart").Val())
		assert.Equal(t, []any{"y"}, s.MustGet("list").Val())
	})
}

func TestStorageRedisHash_CreatedKeepsMerging(t *testing.T) {
	// A second write of the same map (RegenerateId, then Close) sends only
	// what changed since the first.
	_, m := newRedisHashManager(t, gfsession.RedisConfig{})
	id := gfsession.NewSessionId()
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	var newId string
	redisReq(t, m, id, func(s *gsession.Session) {
		var err error
		newId, err = s.RegenerateId(true)
		require.NoError(t, err)
		// A concurrent request on the new id sets another key meanwhile.
		redisReq(t, m, newId, func(s *gsession.Session) { require.NoError(t, s.Set("other", "kept")) })
		require.NoError(t, s.Set("after", true))
	})
	redisReq(t, m, newId, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"user": "ann", "other": "kept", "after": true}, data)
	})
}

func TestStorageRedisHash_ManyKeys(t *testing.T) {
	// More fields than one script batch (256) and than Lua's unpack limit.
	_, m := newRedisHashManager(t, gfsession.RedisConfig{})
	id := gfsession.NewSessionId()
	const n = 9000
	want := make(map[string]any, n)
	for i := 0; i < n; i++ {
		want[fmt.Sprintf("k%05d", i)] = i
	}
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(want)) })
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		require.Equal(t, want, data)
		require.NoError(t, s.RemoveAll())
	})
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		require.Empty(t, data)
	})
}

func TestStorageRedisHash_OutOfLifetimeWriteSparesNewSession(t *testing.T) {
	// A request whose session runs out of MaxLifetime while it runs deletes
	// it on its write, but only if it is still the session it loaded: a new
	// session started under the id meanwhile (a logout that left a message)
	// stays.
	const lifetime, left = time.Second, 300 * time.Millisecond
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix, MaxLifetime: lifetime})
	id := gfsession.NewSessionId()
	key := prefix + gfsession.Handle(id)
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	// Age the session: `left` of its lifetime remains.
	created := time.Now().Add(left - lifetime)
	srv.MustDo(t, "HSET", key, "\x00created", strconv.FormatInt(created.UnixMilli(), 10))

	ctx, cancel := context.WithCancel(context.Background()) // a request of its own
	defer cancel()
	stale := m.New(ctx, id)
	require.Equal(t, "ann", stale.MustGet("user").String(), "loaded within its lifetime")
	// Logged out elsewhere, and a new session started under the id.
	require.NoError(t, m.New(context.Background(), id).RemoveAll())
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "bob")) })

	time.Sleep(time.Until(created.Add(lifetime + 20*time.Millisecond))) // the loaded session's lifetime runs out
	require.NoError(t, stale.Set("cart", 1))
	require.NoError(t, stale.Close())

	redisReq(t, m, id, func(s *gsession.Session) {
		assert.Equal(t, "bob", s.MustGet("user").String(), "the new session must survive the stale write")
		assert.Nil(t, s.MustGet("cart"))
	})
}

// newRedisHashManager returns a Manager (idle TTL one minute) on a hash
// storage with `config` on a private redis-server, and that server.
func newRedisHashManager(t *testing.T, config gfsession.RedisConfig) (*testredis.Server, *gsession.Manager) {
	t.Helper()
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	return srv, gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client, config))
}

// hashRequest starts a request of session `id` with a context of its own,
// as ghttp gives each request; the caller closes the session.
func hashRequest(m *gsession.Manager, id string) *gsession.Session {
	return m.New(context.WithValue(context.Background(), hashRequestKey{}, new(int)), id)
}

// hashRequestKey makes each request's context distinct.
type hashRequestKey struct{}

func TestStorageRedisHash_LogsShortIds(t *testing.T) {
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix})
	logs := captureLog(t)
	var ids []string

	// A session with a field that does not decode.
	corrupt := gfsession.NewSessionId()
	ids = append(ids, corrupt)
	redisReq(t, m, corrupt, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	srv.MustDo(t, "HSET", prefix+gfsession.Handle(corrupt), "role", "\xF5\x01\xFF")
	redisReq(t, m, corrupt, func(s *gsession.Session) { _, _ = s.Data() })

	// A key of another type under the prefix.
	other := gfsession.NewSessionId()
	ids = append(ids, other)
	srv.MustDo(t, "SET", prefix+gfsession.Handle(other), "not a hash")
	redisReq(t, m, other, func(s *gsession.Session) { _, _ = s.Data() })

	// A write of a session deleted while the request ran.
	stale := gfsession.NewSessionId()
	ids = append(ids, stale)
	redisReq(t, m, stale, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	slow := hashRequest(m, stale)
	require.Equal(t, "ann", slow.MustGet("user").String())
	srv.MustDo(t, "DEL", prefix+gfsession.Handle(stale))
	require.NoError(t, slow.Set("page", 2))
	require.NoError(t, slow.Close())

	out := logs.String()
	for _, id := range ids {
		assert.Contains(t, out, gfsession.Handle(id)[:8], "each case logs a line naming the session")
		assert.NotContains(t, out, id, "a log line holds a whole session id")
	}
}

func TestStorageRedisHash_CorruptFieldReadsAsNoSession(t *testing.T) {
	// A field that does not decode must not be dropped with the rest of
	// the session loaded: a session silently missing its role is another
	// session.
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix})
	logs := captureLog(t)
	id := gfsession.NewSessionId()
	key := prefix + gfsession.Handle(id)
	redisReq(t, m, id, func(s *gsession.Session) {
		require.NoError(t, s.Set("user", "ann"))
		require.NoError(t, s.Set("role", "admin"))
	})
	srv.MustDo(t, "HSET", key, "role", "\xF5\x01\xFF") // our marker, then garbage
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err, "corrupt data must not fail the request")
		assert.Empty(t, data, "a session with a corrupt field must read as no session")
	})
	assert.Contains(t, logs.String(), "reads as no session")
	assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", key), "the unreadable hash is deleted")
	// The id works again: a new write starts a fresh session.
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "bob")) })
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"user": "bob"}, data)
	})
}

// hashTestKey returns a random 32-byte crypto key.
func hashTestKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// hashFields returns the fields of the hash `key` on `srv`.
func hashFields(t *testing.T, srv *testredis.Server, key string) map[string]string {
	t.Helper()
	list, ok := srv.MustDo(t, "HGETALL", key).([]any)
	require.True(t, ok)
	fields := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		fields[list[i].(string)] = list[i+1].(string)
	}
	return fields
}

func TestStorageRedisHash_SealedTampering(t *testing.T) {
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{
		Prefix: prefix, CryptoKeys: [][]byte{hashTestKey(t)}, MaxLifetime: time.Hour,
	})
	logs := captureLog(t)
	// other is a second session whose fields an attacker can copy.
	other := gfsession.NewSessionId()
	redisReq(t, m, other, func(s *gsession.Session) {
		require.NoError(t, s.SetMap(map[string]any{"user": "eve", "role": "admin"}))
	})
	otherFields := hashFields(t, srv, prefix+gfsession.Handle(other))
	cases := []struct {
		name   string
		tamper func(key string, fields map[string]string)
	}{
		{"untouched", func(string, map[string]string) {}},
		{"field bytes edited", func(key string, f map[string]string) {
			b := []byte(f["role"])
			b[len(b)/2] ^= 1
			srv.MustDo(t, "HSET", key, "role", string(b))
		}},
		{"field swapped from another session", func(key string, f map[string]string) {
			srv.MustDo(t, "HSET", key, "role", otherFields["role"])
		}},
		{"field copied to another key", func(key string, f map[string]string) {
			srv.MustDo(t, "HSET", key, "admin", f["role"])
		}},
		{"field moved to another key", func(key string, f map[string]string) {
			srv.MustDo(t, "HDEL", key, "role")
			srv.MustDo(t, "HSET", key, "admin", f["role"])
		}},
		{"created edited to extend the lifetime", func(key string, f map[string]string) {
			created, err := strconv.ParseInt(f["\x00created"], 10, 64)
			require.NoError(t, err)
			srv.MustDo(t, "HSET", key, "\x00created", strconv.FormatInt(created+time.Hour.Milliseconds(), 10))
		}},
		{"field deleted", func(key string, f map[string]string) {
			srv.MustDo(t, "HDEL", key, "role")
		}},
		{"manifest deleted", func(key string, f map[string]string) {
			srv.MustDo(t, "HDEL", key, "\x00manifest")
		}},
		{"manifest and fields of another session", func(key string, f map[string]string) {
			srv.MustDo(t, "HSET", key, "role", otherFields["role"], "user", otherFields["user"],
				"\x00manifest", otherFields["\x00manifest"], "\x00created", otherFields["\x00created"])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := gfsession.NewSessionId()
			key := prefix + gfsession.Handle(id)
			redisReq(t, m, id, func(s *gsession.Session) {
				require.NoError(t, s.SetMap(map[string]any{"user": "ann", "role": "user", "n": 1}))
			})
			c.tamper(key, hashFields(t, srv, key))
			redisReq(t, m, id, func(s *gsession.Session) {
				data, err := s.Data()
				require.NoError(t, err, "tampered data must not fail the request")
				if c.name == "untouched" {
					assert.Equal(t, map[string]any{"user": "ann", "role": "user", "n": 1}, data)
					return
				}
				assert.Empty(t, data, "a tampered sealed session must read as no session")
				assert.Contains(t, logs.String(), gfsession.Handle(id)[:8]+`..." reads as no session`)
				assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", key), "the tampered hash is deleted")
			})
		})
	}
}

func TestStorageRedisHash_SealedConcurrentMerges(t *testing.T) {
	// Concurrent requests of a sealed session that write different keys
	// all survive, and the manifest lists exactly what is stored: the
	// session still reads afterwards.
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix, CryptoKeys: [][]byte{hashTestKey(t)}})
	id := gfsession.NewSessionId()
	redisReq(t, m, id, func(s *gsession.Session) {
		require.NoError(t, s.SetMap(map[string]any{"base": "x", "gone": true}))
	})
	const n = 12
	var (
		sessions = make([]*gsession.Session, n)
		wg       sync.WaitGroup
	)
	for i := range sessions {
		sessions[i] = hashRequest(m, id)
		require.Equal(t, "x", sessions[i].MustGet("base").String(), "every request loads before any writes")
		if i == 0 {
			require.NoError(t, sessions[i].Remove("gone"))
		} else {
			require.NoError(t, sessions[i].Set(fmt.Sprintf("k%02d", i), i))
		}
	}
	for _, s := range sessions {
		wg.Add(1)
		go func(s *gsession.Session) {
			defer wg.Done()
			assert.NoError(t, s.Close())
		}(s)
	}
	wg.Wait()
	want := map[string]any{"base": "x"}
	for i := 1; i < n; i++ {
		want[fmt.Sprintf("k%02d", i)] = i
	}
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, want, data)
	})

	// Two first requests of a new id, neither of which found a session:
	// the second merges into the session the first created.
	fresh := gfsession.NewSessionId()
	a, b := hashRequest(m, fresh), hashRequest(m, fresh)
	require.Nil(t, a.MustGet("x").Val())
	require.Nil(t, b.MustGet("x").Val())
	require.NoError(t, a.Set("a", 1))
	require.NoError(t, b.Set("b", 2))
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	redisReq(t, m, fresh, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"a": 1, "b": 2}, data)
	})

	// A new session under an id whose hash does not read replaces it.
	junk := gfsession.NewSessionId()
	srv.MustDo(t, "HSET", prefix+gfsession.Handle(junk), "user", "forged", "\x00created", "1")
	w := hashRequest(m, junk)
	require.NoError(t, w.Set("user", "ann")) // loads nothing: the hash is unreadable
	srv.MustDo(t, "HSET", prefix+gfsession.Handle(junk), "user", "forged", "\x00created", "1")
	require.NoError(t, w.Close())
	redisReq(t, m, junk, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"user": "ann"}, data)
	})
}

func TestStorageRedisHash_SealedRoundTrips(t *testing.T) {
	// Sealing keeps the round trips: a read is one, a write one more.
	srv := testredis.Start(t)
	client, counter := newRedisCountingClient(t, srv.Addr)
	m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client,
		gfsession.RedisConfig{Prefix: redisTestPrefix(), CryptoKeys: [][]byte{hashTestKey(t)}}))
	id := gfsession.NewSessionId()
	redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	for _, step := range []struct {
		name       string
		fn         func(s *gsession.Session)
		roundTrips int64
	}{
		{"read-only", func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) }, 1},
		{"sets", func(s *gsession.Session) { require.NoError(t, s.Set("page", 2)) }, 2},
		{"set and remove", func(s *gsession.Session) {
			require.NoError(t, s.Set("page", 3))
			require.NoError(t, s.Remove("user"))
		}, 2},
	} {
		before := counter.calls.Load()
		redisReq(t, m, id, step.fn)
		assert.Equal(t, step.roundTrips, counter.calls.Load()-before, step.name)
	}
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"page": 3}, data)
	})
}

// hashHook runs `before` ahead of every command (not pipeline) a go-redis
// client sends.
type hashHook struct{ before func(cmd redis.Cmder) }

func (h hashHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h hashHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.before(cmd)
		return next(ctx, cmd)
	}
}

func (h hashHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// hashIndexed returns a Manager on a hash storage with UserKey "uid" (and
// `keys`, if any), its Admin, the server and the key prefix.
func hashIndexed(t *testing.T, keys [][]byte) (*gsession.Manager, gfsession.Admin, *testredis.Server, string) {
	t.Helper()
	prefix := redisTestPrefix()
	srv, m := newRedisHashManager(t, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", CryptoKeys: keys})
	return m, redisAdmin(t, m.GetStorage()), srv, prefix
}

func TestStorageRedisHash_UserIndexFollowsStored(t *testing.T) {
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{hashTestKey(t)}
		}
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			t.Run("logout during a slow request", func(t *testing.T) {
				m, admin, srv, prefix := hashIndexed(t, keys)
				id := gfsession.NewSessionId()
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "page": 1})) })
				slow := hashRequest(m, id)
				require.Equal(t, "alice", slow.MustGet("uid").String())
				logout := hashRequest(m, id)
				require.NoError(t, logout.Remove("uid"))
				require.NoError(t, logout.Close())
				require.NoError(t, slow.Set("page", 2))
				require.NoError(t, slow.Close())

				redisReq(t, m, id, func(s *gsession.Session) {
					data, err := s.Data()
					require.NoError(t, err)
					assert.Equal(t, map[string]any{"page": 2}, data, "the logout stands")
				})
				assert.Nil(t, srv.MustDo(t, "ZSCORE", prefix+"user:alice", id), "no index entry for a user no longer stored")
				n, err := admin.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				assert.Zero(t, n)
			})
			t.Run("user switch during a slow request", func(t *testing.T) {
				m, admin, _, _ := hashIndexed(t, keys)
				id := gfsession.NewSessionId()
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "page": 1})) })
				slow := hashRequest(m, id)
				require.Equal(t, "alice", slow.MustGet("uid").String())
				sw := hashRequest(m, id)
				require.NoError(t, sw.Set("uid", "bob"))
				require.NoError(t, sw.Close())
				require.NoError(t, slow.Set("page", 2))
				require.NoError(t, slow.Close())

				n, err := admin.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				assert.Zero(t, n, "alice is no longer stored")
				n, err = admin.DestroyUser(ctx, "bob")
				require.NoError(t, err)
				assert.Equal(t, 1, n, "DestroyUser of the stored user destroys the session")
				redisReq(t, m, id, func(s *gsession.Session) {
					data, err := s.Data()
					require.NoError(t, err)
					assert.Empty(t, data)
				})
			})
			t.Run("login between a logout's write and its index update", func(t *testing.T) {
				// A tab logs out while another logs the same user in again;
				// the login's write lands after the logout's, so the user is
				// stored: the logout's index update must not remove the
				// entry the login made.
				prefix := redisTestPrefix()
				srv := testredis.Start(t)
				client := newGredis(t, &gredis.Config{Address: srv.Addr})
				m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client,
					gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", CryptoKeys: keys}))
				admin := redisAdmin(t, m.GetStorage())
				id := gfsession.NewSessionId()
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "page": 1})) })

				var (
					armed   atomic.Bool
					written atomic.Bool // the logout's session write went out
				)
				raw := client.GetAdapter().Client().(redis.UniversalClient)
				raw.AddHook(hashHook{before: func(cmd redis.Cmder) {
					if !armed.Load() {
						return
					}
					// The key a command (args[1]) or script (args[3]) is on.
					on := func(key string) bool {
						args := cmd.Args()
						return len(args) > 1 && fmt.Sprint(args[1]) == key || len(args) > 3 && fmt.Sprint(args[3]) == key
					}
					if on(prefix + gfsession.Handle(id)) {
						written.Store(true)
						return
					}
					// The logout's first command on alice's index after its
					// write: let the other tab log in first.
					if written.Load() && on(prefix+"user:alice") && armed.CompareAndSwap(true, false) {
						login := hashRequest(m, id)
						require.NoError(t, login.Set("uid", "alice"))
						require.NoError(t, login.Close())
					}
				}})
				logout := hashRequest(m, id)
				require.Equal(t, "alice", logout.MustGet("uid").String())
				require.NoError(t, logout.Remove("uid"))
				armed.Store(true)
				require.NoError(t, logout.Close())
				require.False(t, armed.Load(), "the login ran inside the logout")

				redisReq(t, m, id, func(s *gsession.Session) {
					assert.Equal(t, "alice", s.MustGet("uid").String(), "the later login is stored")
				})
				n, err := admin.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				assert.Equal(t, 1, n, "DestroyUser must find the session stored for alice")
			})
		})
	}
}

func TestStorageRedisHash_MergeKeepsConcurrentChanges(t *testing.T) {
	// A request that only set `page` must not write back the `role` it
	// loaded over a demotion stored meanwhile.
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			config := gfsession.RedisConfig{}
			if sealed {
				config.CryptoKeys = [][]byte{hashTestKey(t)}
			}
			_, m := newRedisHashManager(t, config)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) {
				require.NoError(t, s.SetMap(map[string]any{"user": "ann", "role": "admin", "cart": map[string]any{"a": 1}}))
			})
			slow := hashRequest(m, id)
			data, err := slow.Data()
			require.NoError(t, err)
			require.Equal(t, "admin", data["role"])
			demote := hashRequest(m, id)
			require.NoError(t, demote.Set("role", "user"))
			require.NoError(t, demote.Remove("cart"))
			require.NoError(t, demote.Close())
			require.NoError(t, slow.Set("page", 2))
			require.NoError(t, slow.Set("user", "ann")) // set again, unchanged
			require.NoError(t, slow.Close())
			redisReq(t, m, id, func(s *gsession.Session) {
				data, err := s.Data()
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"user": "ann", "role": "user", "page": 2}, data)
			})
		})
	}
}

// hashIndexedClient is hashIndexed on a client of its own, for tests that
// hook its commands, with the config `config` (Prefix and UserKey "uid" are
// set). It returns the Manager, its Admin, the server, the client and the
// key prefix.
func hashIndexedClient(t *testing.T, config gfsession.RedisConfig) (*gsession.Manager, gfsession.Admin, *testredis.Server, *gredis.Redis, string) {
	t.Helper()
	config.Prefix, config.UserKey = redisTestPrefix(), "uid"
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client, config))
	return m, redisAdmin(t, m.GetStorage()), srv, client, config.Prefix
}

func TestStorageRedisHash_ReloginRefreshesUserIndex(t *testing.T) {
	// A login handler that clears the session first starts a new session
	// (a new creation time, so a new MaxLifetime) of the same user: the
	// user's index must live as long as that session, not expire one
	// lifetime after the first login.
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{hashTestKey(t)}
		}
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			const life = 1500 * time.Millisecond
			m, admin, srv, _, prefix := hashIndexedClient(t, gfsession.RedisConfig{CryptoKeys: keys, MaxLifetime: life})
			index := prefix + "user:alice"
			id := gfsession.NewSessionId()
			first := time.Now()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			// Let half of the first login's lifetime pass.
			require.Eventually(t, func() bool { return redisPTTL(t, srv, index) < life.Milliseconds()/2 },
				5*time.Second, 10*time.Millisecond)
			redisReq(t, m, id, func(s *gsession.Session) {
				require.Equal(t, "alice", s.MustGet("uid").String())
				require.NoError(t, s.RemoveAll())
				require.NoError(t, s.Set("uid", "alice"))
			})
			assert.Greater(t, redisPTTL(t, srv, index), life.Milliseconds()/2, "the login restarts the index's TTL")
			// Past the end of the first login's lifetime, the second login's
			// session lives on.
			require.Eventually(t, func() bool { return time.Since(first) > life+100*time.Millisecond },
				5*time.Second, 10*time.Millisecond)
			redisReq(t, m, id, func(s *gsession.Session) {
				require.Equal(t, "alice", s.MustGet("uid").String(), "the session is still alive and logged in")
			})
			n, err := admin.DestroyUser(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, 1, n, "DestroyUser must destroy the live session of alice")
		})
	}
}

// hashPipelineHook is hashHook that also sees the commands of pipelines and
// transactions (the first write of a new session), before they are sent.
type hashPipelineHook struct{ hashHook }

func (h hashPipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.before(cmd)
		}
		return next(ctx, cmds)
	}
}

func TestStorageRedisHash_DestroyUserDuringLoginKeepsEntry(t *testing.T) {
	// A DestroyUser between a login's index entry and the login's write
	// sees the session without the user yet: the entry it drops as stale
	// must come back, or every later DestroyUser misses the session.
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{hashTestKey(t)}
		}
		for _, loaded := range []bool{true, false} {
			t.Run(fmt.Sprintf("sealed=%v/loaded=%v", sealed, loaded), func(t *testing.T) {
				m, admin, _, client, prefix := hashIndexedClient(t, gfsession.RedisConfig{CryptoKeys: keys})
				id := gfsession.NewSessionId()
				if loaded {
					redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("page", 1)) })
				}
				var armed, indexed atomic.Bool
				raw := client.GetAdapter().Client().(redis.UniversalClient)
				raw.AddHook(hashPipelineHook{hashHook{before: func(cmd redis.Cmder) {
					if !armed.Load() {
						return
					}
					args := cmd.Args()
					on := func(key string) bool {
						return len(args) > 1 && fmt.Sprint(args[1]) == key || len(args) > 3 && fmt.Sprint(args[3]) == key
					}
					if on(prefix + "user:alice") {
						indexed.Store(true)
						return
					}
					if indexed.Load() && on(prefix+gfsession.Handle(id)) && armed.CompareAndSwap(true, false) {
						// "Log out everywhere" for alice, between the login's
						// index entry and its session write.
						n, err := admin.DestroyUser(ctx, "alice")
						require.NoError(t, err)
						require.Zero(t, n)
					}
				}}})
				login := hashRequest(m, id)
				if loaded {
					require.Equal(t, 1, login.MustGet("page").Int())
				}
				require.NoError(t, login.Set("uid", "alice"))
				armed.Store(true)
				require.NoError(t, login.Close())
				require.False(t, armed.Load(), "DestroyUser ran inside the login")

				redisReq(t, m, id, func(s *gsession.Session) {
					require.Equal(t, "alice", s.MustGet("uid").String(), "the login is stored")
				})
				n, err := admin.DestroyUser(ctx, "alice")
				require.NoError(t, err)
				assert.Equal(t, 1, n, "a later DestroyUser must find the session stored for alice")
			})
		}
	}
}

func TestStorageRedisHash_SameUserRewriteAfterLogoutIsIndexed(t *testing.T) {
	// A request that loaded user 42 rewrites the user key with the same
	// user in another representation (the json codec loads 42 as int64,
	// the handler sets an int) after a logout elsewhere removed the user
	// and its index entry: the write stores the user again, so it must
	// index it again.
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{hashTestKey(t)}
		}
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			m, admin, _, _, _ := hashIndexedClient(t, gfsession.RedisConfig{CryptoKeys: keys, Codec: "json"})
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": 42, "page": 1})) })
			slow := hashRequest(m, id)
			require.Equal(t, 42, slow.MustGet("uid").Int())
			logout := hashRequest(m, id)
			require.NoError(t, logout.Remove("uid"))
			require.NoError(t, logout.Close())
			require.NoError(t, slow.Set("uid", 42)) // e.g. a profile refresh
			require.NoError(t, slow.Close())

			redisReq(t, m, id, func(s *gsession.Session) {
				require.Equal(t, "42", s.MustGet("uid").String(), "the later write stores the user")
			})
			n, err := admin.DestroyUser(ctx, "42")
			require.NoError(t, err)
			assert.Equal(t, 1, n, "the session stores user 42: DestroyUser must find it")
		})
	}
}

func TestStorageRedisHash_ShortManifestIsReplaced(t *testing.T) {
	// A hash whose manifest is shorter than a tag is unreadable: the first
	// write of a new session under the id replaces it at once, rather than
	// retrying until it gives up.
	prefix := redisTestPrefix()
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client,
		gfsession.RedisConfig{Prefix: prefix, CryptoKeys: [][]byte{hashTestKey(t)}}))
	id := gfsession.NewSessionId()
	var evals atomic.Int64
	raw := client.GetAdapter().Client().(redis.UniversalClient)
	raw.AddHook(hashHook{before: func(cmd redis.Cmder) {
		if cmd.Name() == "evalsha" || cmd.Name() == "eval" {
			evals.Add(1)
		}
	}})
	s := hashRequest(m, id)
	v, err := s.Get("x") // loads: no session yet
	require.NoError(t, err)
	require.Nil(t, v)
	srv.MustDo(t, "HSET", prefix+gfsession.Handle(id), "\x00created", "1700000000000", "\x00manifest", "\xF5Mshort", "a", "b")
	evals.Store(0)
	require.NoError(t, s.Set("k", "v"))
	require.NoError(t, s.Close())
	assert.LessOrEqual(t, evals.Load(), int64(4), "script calls of the write")
	redisReq(t, m, id, func(s *gsession.Session) {
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"k": "v"}, data, "the write replaced the unreadable hash")
	})
}

func TestStorageRedisHash_DestroyUserRechecksAfterDroppingEntry(t *testing.T) {
	// A DestroyUser that finds the session without the user, and a login
	// whose write (and index check) lands between that check and the
	// removal of the entry: the session stored under the user must be
	// destroyed, since its entry is gone.
	ctx := context.Background()
	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{hashTestKey(t)}
		}
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			m, admin, srv, client, prefix := hashIndexedClient(t, gfsession.RedisConfig{CryptoKeys: keys})
			index := prefix + "user:alice"
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("page", 1)) })

			var (
				armed, indexed, checked atomic.Bool
				proceed                 = make(chan struct{})
			)
			raw := client.GetAdapter().Client().(redis.UniversalClient)
			raw.AddHook(hashHook{before: func(cmd redis.Cmder) {
				if !armed.Load() {
					return
				}
				args := cmd.Args()
				on := func(key string) bool {
					return len(args) > 1 && fmt.Sprint(args[1]) == key || len(args) > 3 && fmt.Sprint(args[3]) == key
				}
				switch {
				case !indexed.Load() && on(index):
					indexed.Store(true) // the login's index entry
				case indexed.Load() && !checked.Load() && cmd.Name() == "evalsha" && on(prefix+gfsession.Handle(id)):
					<-proceed // the login's write waits for DestroyUser's check
				case cmd.Name() == "hmget" && on(prefix+gfsession.Handle(id)):
					checked.Store(true) // DestroyUser checks the session
				case checked.Load() && on(index) && armed.CompareAndSwap(true, false):
					// DestroyUser removes the entry: let the login's write land first.
					close(proceed)
					require.Eventually(t, func() bool {
						return srv.MustDo(t, "HEXISTS", prefix+gfsession.Handle(id), "uid").(int64) == 1
					}, 5*time.Second, 5*time.Millisecond)
				}
			}})
			login := hashRequest(m, id)
			require.Equal(t, 1, login.MustGet("page").Int())
			require.NoError(t, login.Set("uid", "alice"))
			armed.Store(true)
			closed := make(chan error, 1)
			go func() { closed <- login.Close() }()
			// The login's index entry is in Redis, not only sent: a
			// DestroyUser that read the index before it would find nothing
			// to check, and the login's write would wait for it forever.
			require.Eventually(t, func() bool {
				return indexed.Load() && srv.MustDo(t, "ZSCORE", index, gfsession.Handle(id)) != nil
			}, 5*time.Second, 5*time.Millisecond)
			n, err := admin.DestroyUser(ctx, "alice")
			require.NoError(t, err)
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				close(proceed)
				t.Fatal("the login's write still waits: DestroyUser never removed the entry")
			}
			require.False(t, armed.Load(), "the login's write landed inside DestroyUser")
			assert.Equal(t, 1, n, "DestroyUser must destroy the session stored under alice meanwhile")
			redisReq(t, m, id, func(s *gsession.Session) {
				data, err := s.Data()
				require.NoError(t, err)
				assert.Empty(t, data, "the session is destroyed")
			})
		})
	}
}

// TestStorageRedisHash_LargeDeltas writes and removes more fields in one
// request than Lua's unpack takes at once, so that the write scripts send
// them in batches, sealed and not, and checks every field lands.
func TestStorageRedisHash_LargeDeltas(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			var keys [][]byte
			if sealed {
				keys = [][]byte{hashTestKey(t)}
			}
			srv := testredis.Start(t)
			client := newGredis(t, &gredis.Config{Address: srv.Addr})
			m := gsession.New(time.Minute, newRedisStorage(t, gfsession.TypeRedisHash, client,
				gfsession.RedisConfig{Prefix: redisTestPrefix(), CryptoKeys: keys}))
			id := gfsession.NewSessionId()
			const n = 1300
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("first", 1)) })
			redisReq(t, m, id, func(s *gsession.Session) {
				for i := 0; i < n; i++ {
					require.NoError(t, s.Set(fmt.Sprintf("k%d", i), i))
				}
			})
			redisReq(t, m, id, func(s *gsession.Session) {
				require.Equal(t, n+1, s.MustSize())
				for i := 0; i < n; i += 2 {
					require.NoError(t, s.Remove(fmt.Sprintf("k%d", i)))
				}
				require.NoError(t, s.Set("last", true))
			})
			redisReq(t, m, id, func(s *gsession.Session) {
				data := s.MustData()
				require.Len(t, data, n/2+2)
				for i := 1; i < n; i += 2 {
					require.EqualValues(t, i, data[fmt.Sprintf("k%d", i)])
				}
				require.Equal(t, true, data["last"])
			})
		})
	}
}
