package gfsession

// Attacks on the TTL restart period of the Redis storages (refresh.go:
// refreshMemo; redisStore.get; StorageRedisHash.load). A load restarts a
// session's idle TTL only when this process's last restart of it leaves
// less than ttl - min(ttl/64, 1s); otherwise it is a plain GET or a lone
// HGETALL. Each test tries to break one promise of that change:
//
//   - a session in use never expires: after a load at time x with idle TTL
//     `ttl`, the session lives at least until x + ttl - refreshPeriod(ttl);
//   - what is served never outlives MaxLifetime;
//   - a deleted session stays deleted;
//   - the memo's memory stays bounded, whatever ids are sent;
//   - managers with different TTLs on one storage never make a session
//     expire early by more than the period;
//   - Redis errors are returned and the storage recovers;
//   - Cluster and Sentinel keep working.

import (
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// atkKinds are the two Redis storages.
var atkKinds = []string{TypeRedis, TypeRedisHash}

// atkSlack absorbs the millisecond rounding of PTTL and of the server's
// clock against ours.
const atkSlack = 5 * time.Millisecond

// atkRedisStorage is what both Redis storages offer.
type atkRedisStorage interface {
	gsession.Storage
	Admin
	Close(ctx context.Context) error
}

// atkNewStorage creates a storage of `kind` on `client` and returns it with
// its store, closed when the test ends.
func atkNewStorage(t *testing.T, kind string, client *gredis.Redis, config RedisConfig) (atkRedisStorage, *redisStore) {
	t.Helper()
	var (
		st atkRedisStorage
		r  *redisStore
	)
	if kind == TypeRedisHash {
		s, err := NewStorageRedisHash(client, config)
		require.NoError(t, err)
		st, r = s, s.r
	} else {
		s, err := NewStorageRedis(client, config)
		require.NoError(t, err)
		st, r = s, s.r
	}
	t.Cleanup(func() { assert.NoError(t, st.Close(context.Background())) })
	return st, r
}

// atkClient creates a gredis client (gf's go-redis adapter), closed when the
// test ends.
func atkClient(t *testing.T, config *gredis.Config) *gredis.Redis {
	t.Helper()
	client, err := gredis.New(config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	return client
}

// atkRaw returns the go-redis client under `client`.
func atkRaw(t *testing.T, client *gredis.Redis) redis.UniversalClient {
	t.Helper()
	raw, ok := client.GetAdapter().Client().(redis.UniversalClient)
	require.True(t, ok, "gf's go-redis adapter")
	return raw
}

// atkPrefix returns a key prefix of its own for one test.
func atkPrefix() string {
	return "gfatk:" + strings.NewReplacer("-", "x", "_", "y").Replace(NewSessionId()[:10]) + ":"
}

// atkReqCtxKey tells requests apart.
type atkReqCtxKey struct{}

// atkReqCtx is a context of its own, as each ghttp request has: the write
// path tells a request's own RemoveAll from another's by it.
func atkReqCtx() context.Context {
	return context.WithValue(context.Background(), atkReqCtxKey{}, NewSessionId())
}

// atkReq runs one request of manager `m` on session `id`.
func atkReq(t *testing.T, m *gsession.Manager, id string, fn func(s *gsession.Session)) {
	t.Helper()
	s := m.New(atkReqCtx(), id)
	fn(s)
	require.NoError(t, s.Close())
}

// atkPTTL returns the PTTL of `key` (-2: no key).
func atkPTTL(t *testing.T, client *gredis.Redis, key string) int64 {
	t.Helper()
	v, err := client.Do(context.Background(), "PTTL", key)
	require.NoError(t, err)
	return v.Int64()
}

// atkAssertSlides checks the sliding promise for a load of the session
// stored under `key` with idle TTL `ttl` that started at `start`: the key
// lives at least until start + ttl - refreshPeriod(ttl).
func atkAssertSlides(t *testing.T, client *gredis.Redis, key string, ttl time.Duration, start time.Time, msgAndArgs ...any) bool {
	t.Helper()
	v, err := client.Do(context.Background(), "PTTL", key) // no require: it runs in goroutines too
	if !assert.NoError(t, err) {
		return false
	}
	pttl := v.Int64()
	floor := start.Add(ttl-refreshPeriod(ttl)).Sub(time.Now()) - atkSlack
	return assert.GreaterOrEqual(t, pttl, floor.Milliseconds(), msgAndArgs...)
}

// atkLoad is a load of session `id` at `ttl` that must find it with its
// "user" key.
func atkLoad(t *testing.T, st gsession.Storage, id string, ttl time.Duration) {
	t.Helper()
	data, err := st.GetSession(context.Background(), id, ttl)
	require.NoError(t, err)
	require.NotNil(t, data, "the session is gone")
	require.Equal(t, "ann", data.GetVar("user").String())
}

// ---------------------------------------------------------------------------
// Hooks

// atkCounter counts the loads a go-redis client sends, as a hook: loads
// that restart the TTL (GETEX, a pipeline with PEXPIRE) and loads that do
// not (GET, a lone HGETALL). It also fails the next command of one kind
// once, on demand: "getex", "get", "hgetall" or "pipeline".
type atkCounter struct {
	restarts, plain atomic.Int64
	failNext        atomic.Pointer[string]
}

var errAtkInjected = errors.New("injected redis failure")

func (c *atkCounter) fail(kind string) { c.failNext.Store(&kind) }

// takeFault reports whether a command of kind `kind` must fail now.
func (c *atkCounter) takeFault(kind string) bool {
	p := c.failNext.Load()
	return p != nil && *p == kind && c.failNext.CompareAndSwap(p, nil)
}

func (c *atkCounter) reset() { c.restarts.Store(0); c.plain.Store(0) }

func (c *atkCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *atkCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if c.takeFault(name) {
			cmd.SetErr(errAtkInjected)
			return errAtkInjected
		}
		switch name {
		case "getex":
			c.restarts.Add(1)
		case "get", "hgetall":
			c.plain.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *atkCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		load, restart := false, false
		for _, cmd := range cmds {
			switch cmd.Name() {
			case "hgetall":
				load = true
			case "pexpire":
				restart = true
			case "multi", "exec":
				return next(ctx, cmds) // a write's transaction
			}
		}
		if load && c.takeFault("pipeline") {
			for _, cmd := range cmds {
				cmd.SetErr(errAtkInjected)
			}
			return errAtkInjected
		}
		if load && restart {
			c.restarts.Add(1)
		}
		return next(ctx, cmds)
	}
}

// atkHoldKey marks the context of a load that atkHoldHook holds.
type atkHoldKey struct{}

// atkHold holds the first command (or pipeline) of a context after Redis
// answered it, until release is closed: the server has applied it, the
// caller has not seen the reply yet.
type atkHold struct {
	once     sync.Once
	executed chan struct{}
	release  chan struct{}
}

func newAtkHold() *atkHold {
	return &atkHold{executed: make(chan struct{}), release: make(chan struct{})}
}

func (h *atkHold) wait() {
	h.once.Do(func() {
		close(h.executed)
		<-h.release
	})
}

type atkHoldHook struct{}

func (atkHoldHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (atkHoldHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if h, ok := ctx.Value(atkHoldKey{}).(*atkHold); ok {
			h.wait()
		}
		return err
	}
}

func (atkHoldHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if h, ok := ctx.Value(atkHoldKey{}).(*atkHold); ok {
			h.wait()
		}
		return err
	}
}

// ---------------------------------------------------------------------------
// Different TTLs on one storage

// TestRefreshAttack_ShorterTTLWriteThenLongerTTLRead checks that a write by
// a manager with a short TTL does not leave a session that a manager with a
// long TTL then reads with the short TTL: a load restarts the TTL at every
// read but for at most refreshPeriod, so after the long manager's load at
// x the session lives until x + ttl - refreshPeriod(ttl), whatever TTL the
// last write of another manager on the same storage gave it.
func TestRefreshAttack_ShorterTTLWriteThenLongerTTLRead(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	const (
		long  = 64 * time.Second
		short = 2 * time.Second
	)
	period := refreshPeriod(long)
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			mLong, mShort := gsession.New(long, st), gsession.New(short, st)
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 5, "the machine never ran the requests within %v", period)
				id := NewSessionId()
				key := prefix + Handle(id)
				atkReq(t, mLong, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
				restarted := time.Now()
				atkReq(t, mLong, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
				atkReq(t, mShort, id, func(s *gsession.Session) {
					assert.Equal(t, "ann", s.MustGet("user").String())
					require.NoError(t, s.Set("seen", 1))
				})
				written := time.Now()
				require.LessOrEqual(t, atkPTTL(t, client, key), short.Milliseconds(), "the short manager's write sets its own TTL")
				read := time.Now()
				atkReq(t, mLong, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
				if read.Sub(restarted) >= period-100*time.Millisecond {
					continue // stalled: that load was due anyway, which tests nothing
				}
				atkAssertSlides(t, client, key, long, read,
					"the %v manager loaded the session %v after the %v manager wrote it", long, read.Sub(written), short)
				// The session itself, once the short TTL has surely run out
				// (polling the key: gone early, or time is up).
				require.Eventually(t, func() bool {
					if time.Since(written) > short+200*time.Millisecond {
						return true
					}
					v, err := client.Do(context.Background(), "PTTL", key)
					return err == nil && v.Int64() == -2
				}, short+5*time.Second, 10*time.Millisecond)
				atkReq(t, mLong, id, func(s *gsession.Session) {
					assert.Equal(t, "ann", s.MustGet("user").String(),
						"the session the %v manager loaded %v ago expired", long, time.Since(read))
				})
				return
			}
		})
	}
}

// TestRefreshAttack_RacingLoadsWithDifferentTTLs checks the same promise
// for two loads in flight at once, one by a manager with a long TTL and one
// by a manager with a short TTL, both restarting the TTL: Redis applies the
// long restart first and the short one last, but the long load is the last
// to record its restart. A load by the long manager after that must still
// leave the session at least ttl - refreshPeriod(ttl), as a restart at
// every read would.
func TestRefreshAttack_RacingLoadsWithDifferentTTLs(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	atkRaw(t, client).AddHook(atkHoldHook{})
	const (
		long  = 64 * time.Second
		short = 2 * time.Second
	)
	period := refreshPeriod(long)
	ctx := context.Background()
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			// The session is written by another process (a storage of its
			// own): this one knows nothing of its TTL, so both loads below
			// restart it.
			other, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			mOther := gsession.New(long, other)
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 5, "the machine never ran the loads within %v", period)
				id := NewSessionId()
				key := prefix + Handle(id)
				atkReq(t, mOther, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

				hold := newAtkHold()
				started := time.Now()
				done := make(chan error, 1)
				go func() {
					data, err := st.GetSession(context.WithValue(ctx, atkHoldKey{}, hold), id, long)
					if err == nil && data == nil {
						err = errors.New("the long load found no session")
					}
					done <- err
				}()
				select {
				case <-hold.executed:
				case err := <-done:
					t.Fatalf("the long load was never held: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("the long load never reached Redis")
				}
				atkLoad(t, st, id, short)
				require.LessOrEqual(t, atkPTTL(t, client, key), short.Milliseconds(), "the short load restarted the TTL last")
				close(hold.release)
				require.NoError(t, <-done)

				read := time.Now()
				atkLoad(t, st, id, long)
				if read.Sub(started) >= period-100*time.Millisecond {
					continue // stalled: that load was due anyway
				}
				atkAssertSlides(t, client, key, long, read,
					"a %v load after racing %v and %v loads", long, long, short)
				return
			}
		})
	}
}

// TestRefreshAttack_MixedTTLReadsSlide checks the sliding promise for loads
// by three managers with different TTLs on one storage, in a random order,
// with writes by the manager of the longest TTL in between: after every
// load the session lives at least the loader's ttl less its period.
func TestRefreshAttack_MixedTTLReadsSlide(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	ttls := []time.Duration{1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond}
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			mLongest := gsession.New(ttls[len(ttls)-1], st)
			id := NewSessionId()
			key := prefix + Handle(id)
			atkReq(t, mLongest, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			deadline := time.Now().Add(1500 * time.Millisecond)
			for op := 0; time.Now().Before(deadline); op++ {
				start := time.Now()
				var ttl time.Duration
				if rnd.IntN(8) == 0 {
					ttl = ttls[len(ttls)-1]
					atkReq(t, mLongest, id, func(s *gsession.Session) {
						assert.Equal(t, "ann", s.MustGet("user").String())
						require.NoError(t, s.Set("op", op))
					})
				} else {
					ttl = ttls[rnd.IntN(len(ttls))]
					atkLoad(t, st, id, ttl)
				}
				if !atkAssertSlides(t, client, key, ttl, start, "operation %d at TTL %v", op, ttl) {
					return
				}
				time.Sleep(time.Duration(rnd.IntN(30)) * time.Millisecond) // pacing, not waiting
			}
		})
	}
}

// TestRefreshAttack_ConcurrentReadsSlide checks the sliding promise for
// loads of one session by one manager from several goroutines at once.
func TestRefreshAttack_ConcurrentReadsSlide(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	const ttl = 1600 * time.Millisecond // period 25ms
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			m := gsession.New(ttl, st)
			id := NewSessionId()
			key := prefix + Handle(id)
			atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			deadline := time.Now().Add(time.Second)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						start := time.Now()
						data, err := st.GetSession(context.Background(), id, ttl)
						if !assert.NoError(t, err) || !assert.NotNil(t, data, "the session is gone") {
							return
						}
						if !atkAssertSlides(t, client, key, ttl, start) {
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// ---------------------------------------------------------------------------
// Deletion and MaxLifetime

// TestRefreshAttack_DeletedSessionStaysDeleted checks that a session whose
// TTL this process just restarted, deleted by a logout, Destroy,
// DestroyHandle or DestroyUser, reads as no session at once (within the
// period, where loads leave the TTL alone), and that a request that loaded
// it before the deletion and writes after does not bring it back.
func TestRefreshAttack_DeletedSessionStaysDeleted(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	const ttl = 64 * time.Second
	ctx := context.Background()
	deleters := map[string]func(t *testing.T, st atkRedisStorage, m *gsession.Manager, id string){
		"logout": func(t *testing.T, _ atkRedisStorage, m *gsession.Manager, id string) {
			atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })
		},
		"Destroy": func(t *testing.T, st atkRedisStorage, _ *gsession.Manager, id string) {
			require.NoError(t, st.Destroy(ctx, id))
		},
		"DestroyHandle": func(t *testing.T, st atkRedisStorage, _ *gsession.Manager, id string) {
			require.NoError(t, st.DestroyHandle(ctx, Handle(id)))
		},
		"DestroyUser": func(t *testing.T, st atkRedisStorage, _ *gsession.Manager, id string) {
			n, err := st.DestroyUser(ctx, "ann")
			require.NoError(t, err)
			require.Equal(t, 1, n)
		},
	}
	for _, kind := range atkKinds {
		for name, del := range deleters {
			t.Run(kind+"/"+name, func(t *testing.T) {
				prefix := atkPrefix()
				st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix, UserKey: "user"})
				m := gsession.New(ttl, st)
				id := NewSessionId()
				key := prefix + Handle(id)
				atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
				atkLoad(t, st, id, ttl) // restarts the TTL: the next loads are plain reads
				atkLoad(t, st, id, ttl)

				stale := m.New(atkReqCtx(), id)
				require.Equal(t, "ann", stale.MustGet("user").String())

				del(t, st, m, id)
				for i := 0; i < 3; i++ {
					data, err := st.GetSession(ctx, id, ttl)
					require.NoError(t, err)
					assert.Nil(t, data, "load %d after the deletion", i)
				}
				atkReq(t, m, id, func(s *gsession.Session) {
					assert.True(t, s.MustGet("user").IsNil(), "a request after the deletion")
				})

				require.NoError(t, stale.Set("late", 1))
				_ = stale.Close() // a stale write may fail or be dropped; either way:
				data, err := st.GetSession(ctx, id, ttl)
				require.NoError(t, err)
				if data != nil {
					assert.True(t, data.GetVar("user").IsNil(), "the deleted session came back: %v", data.Map())
				}
				assert.Equal(t, int64(-2), atkPTTL(t, client, key), "the deleted session's key is back")
			})
		}
	}
}

// TestRefreshAttack_MaxLifetimeNeverServedPast checks that loads that leave
// the TTL alone still never serve a session past MaxLifetime, that the
// session is served until then, that once gone it stays gone, and for the
// hash storage that its key's TTL stays capped at what is left of
// MaxLifetime.
func TestRefreshAttack_MaxLifetimeNeverServedPast(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	const (
		ttl      = 6400 * time.Millisecond // period 100ms
		lifetime = 800 * time.Millisecond
	)
	ctx := context.Background()
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix, MaxLifetime: lifetime})
			m := gsession.New(ttl, st)
			id := NewSessionId()
			key := prefix + Handle(id)
			writeStart := time.Now()
			atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			writeEnd := time.Now()
			reads := 0
			for {
				start := time.Now()
				require.Less(t, start.Sub(writeEnd), lifetime+5*time.Second, "the session is still served")
				data, err := st.GetSession(ctx, id, ttl)
				end := time.Now()
				require.NoError(t, err)
				if data == nil || data.GetVar("user").IsNil() {
					// Created no earlier than writeStart: a session lost
					// before writeStart + lifetime was cut short.
					// (The creation time is kept in whole milliseconds.)
					assert.False(t, end.Add(2*time.Millisecond).Before(writeStart.Add(lifetime)),
						"gone %v after it was written, before its lifetime of %v", end.Sub(writeStart), lifetime)
					break
				}
				reads++
				// Created no later than writeEnd: served past it, the cap
				// was exceeded.
				assert.True(t, start.Before(writeEnd.Add(lifetime)),
					"served %v after it was written, past its lifetime of %v", start.Sub(writeEnd), lifetime)
				if kind == TypeRedisHash {
					before := time.Now()
					pttl := atkPTTL(t, client, key)
					assert.LessOrEqual(t, pttl, (writeEnd.Add(lifetime).Sub(before) + atkSlack).Milliseconds(),
						"the hash's TTL outlives MaxLifetime")
				}
				time.Sleep(5 * time.Millisecond) // pacing
			}
			assert.Greater(t, reads, 10, "too few loads within the lifetime to test anything")
			for i := 0; i < 5; i++ {
				data, err := st.GetSession(ctx, id, ttl)
				require.NoError(t, err)
				assert.Nil(t, data, "load %d after the lifetime", i)
			}
			assert.Equal(t, int64(-2), atkPTTL(t, client, key), "the key of a session past its lifetime")
		})
	}
}

// ---------------------------------------------------------------------------
// Memory

// TestRefreshAttack_MemoBoundedUnderFlood checks that a flood of random
// session ids leaves nothing in the memo (they name no session), and that
// sessions read once are forgotten while other sessions are in use: the
// memo keeps the sessions restarted in the last generations only.
func TestRefreshAttack_MemoBoundedUnderFlood(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	ctx := context.Background()
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			prefix := atkPrefix()
			st, r := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})

			// Random ids, many at once, with TTLs large and small.
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 250; i++ {
						ttl := []time.Duration{time.Hour, time.Second, 64 * time.Millisecond}[i%3]
						data, err := st.GetSession(ctx, NewSessionId(), ttl)
						if !assert.NoError(t, err) || !assert.Nil(t, data) {
							return
						}
					}
				}()
			}
			wg.Wait()
			assert.Equal(t, 0, r.refreshes.size(), "random ids left records")

			// Deleted sessions, read again and again: no more records than sessions.
			m := gsession.New(time.Minute, st)
			var gone []string
			for i := 0; i < 50; i++ {
				id := NewSessionId()
				atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
				atkLoad(t, st, id, time.Minute)
				require.NoError(t, st.Destroy(ctx, id))
				gone = append(gone, id)
			}
			for round := 0; round < 5; round++ {
				for _, id := range gone {
					data, err := st.GetSession(ctx, id, time.Minute)
					require.NoError(t, err)
					require.Nil(t, data)
				}
			}
			assert.LessOrEqual(t, r.refreshes.size(), len(gone))

			// One session in use per shard of the memo, and many read once.
			reps := make([]string, refreshMemoShards)
			for have := 0; have < refreshMemoShards; {
				id := NewSessionId()
				if i := maphash.String(shardSeed, Handle(id)) % refreshMemoShards; reps[i] == "" {
					reps[i] = id
					have++
				}
			}
			for i := 0; i < 300; i++ {
				id := NewSessionId()
				require.NoError(t, st.SetSession(ctx, id, atkData(), time.Minute))
				atkLoad(t, st, id, time.Minute)
			}
			require.Greater(t, r.refreshes.size(), 2*len(reps), "the sessions read once are remembered")
			const repTTL = 640 * time.Millisecond // period 10ms
			for _, id := range reps {
				require.NoError(t, st.SetSession(ctx, id, atkData(), repTTL))
			}
			deadline := time.Now().Add(15 * time.Second)
			for r.refreshes.size() > 2*len(reps) {
				require.True(t, time.Now().Before(deadline), "the memo still holds %d records", r.refreshes.size())
				for _, id := range reps {
					atkLoad(t, st, id, repTTL)
				}
			}
		})
	}
}

// atkData returns the data of a session of user "ann".
func atkData() *gmap.StrAnyMap {
	m := gmap.NewStrAnyMap(true)
	m.Set("user", "ann")
	return m
}

// ---------------------------------------------------------------------------
// Errors and outages

// TestRefreshAttack_FailuresAreReturnedAndNotRemembered checks that a
// restarting load that fails returns the error and is not taken for a
// restart (the next load restarts the TTL), and that a plain load (within
// the period) that fails returns its error too, not "no session".
func TestRefreshAttack_FailuresAreReturnedAndNotRemembered(t *testing.T) {
	srv := testredis.Start(t)
	client := atkClient(t, &gredis.Config{Address: srv.Addr})
	counter := &atkCounter{}
	atkRaw(t, client).AddHook(counter)
	const ttl = 64 * time.Second
	period := refreshPeriod(ttl)
	ctx := context.Background()
	cmds := map[string][2]string{TypeRedis: {"getex", "get"}, TypeRedisHash: {"pipeline", "hgetall"}}
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			restartCmd, plainCmd := cmds[kind][0], cmds[kind][1]
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			// Sessions written by another process (a storage of its own):
			// this one knows nothing of their TTL, so its first load must
			// restart it.
			other, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			mOther := gsession.New(ttl, other)
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 5, "the machine never ran the loads within %v", period)
				id := NewSessionId()
				key := prefix + Handle(id)
				atkReq(t, mOther, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
				// Let the write's TTL run down a little, so that a restart shows.
				_, err := client.Do(ctx, "PEXPIRE", key, 30000)
				require.NoError(t, err)

				counter.reset()
				counter.fail(restartCmd)
				data, err := st.GetSession(ctx, id, ttl)
				require.Error(t, err, "a failed restarting load")
				require.ErrorIs(t, err, errAtkInjected)
				assert.Nil(t, data)

				start := time.Now()
				atkLoad(t, st, id, ttl)
				require.Equal(t, int64(1), counter.restarts.Load(), "the load after a failed restart restarts the TTL")
				atkAssertSlides(t, client, key, ttl, start, "after the failed restart")

				counter.fail(plainCmd)
				_, err = st.GetSession(ctx, id, ttl)
				if time.Since(start) >= period-100*time.Millisecond {
					counter.failNext.Store(nil)
					continue // stalled: the load may have restarted instead
				}
				require.Error(t, err, "a failed plain load")
				require.ErrorIs(t, err, errAtkInjected)

				plainStart := time.Now()
				atkLoad(t, st, id, ttl)
				if time.Since(start) >= period-100*time.Millisecond {
					continue
				}
				assert.Equal(t, int64(1), counter.restarts.Load(), "a load within the period restarted the TTL")
				assert.Equal(t, int64(1), counter.plain.Load(), "plain loads")
				atkAssertSlides(t, client, key, ttl, plainStart, "a plain load")
				return
			}
		})
	}
}

// TestRefreshAttack_OutageRecovers checks that while Redis hangs or is
// down, loads within the period (plain reads) fail with an error rather
// than serve or drop the session, and that afterwards the same storage
// serves the session again with its TTL restarted.
func TestRefreshAttack_OutageRecovers(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Persistence: true})
	client := atkClient(t, &gredis.Config{Address: srv.Addr,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	const ttl = 64 * time.Second
	ctx := context.Background()
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) {
			if !srv.Running() {
				srv.Restart(t)
			}
			prefix := atkPrefix()
			st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
			m := gsession.New(ttl, st)
			id := NewSessionId()
			key := prefix + Handle(id)
			atkReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
			atkLoad(t, st, id, ttl) // restarted: the next loads are plain reads

			srv.Pause(t)
			start := time.Now()
			data, err := st.GetSession(ctx, id, ttl)
			assert.Error(t, err, "a load from a hung server")
			assert.Nil(t, data)
			assert.Less(t, time.Since(start), 3*time.Second, "no error within the timeout")
			srv.Resume(t)
			require.Eventually(t, func() bool {
				data, err := st.GetSession(ctx, id, ttl)
				return err == nil && data != nil
			}, 10*time.Second, 20*time.Millisecond, "the storage did not recover from the hang")

			srv.Kill(t)
			data, err = st.GetSession(ctx, id, ttl)
			assert.Error(t, err, "a load from a dead server")
			assert.Nil(t, data)
			srv.Restart(t)
			var read time.Time
			require.Eventually(t, func() bool {
				read = time.Now()
				data, err := st.GetSession(ctx, id, ttl)
				return err == nil && data != nil && data.GetVar("user").String() == "ann"
			}, 10*time.Second, 20*time.Millisecond, "the storage did not recover from the restart")
			atkAssertSlides(t, client, key, ttl, read, "after the restart")
		})
	}
}

// ---------------------------------------------------------------------------
// Cluster and Sentinel

// atkSlideRun loads a few sessions again and again through `client` for a
// while and checks the sliding promise after every load, and that the
// loads within the period are plain reads (counted by `counter`).
func atkSlideRun(t *testing.T, client *gredis.Redis, counter *atkCounter, kind string) {
	const ttl = 3200 * time.Millisecond // period 50ms
	prefix := atkPrefix()
	st, _ := atkNewStorage(t, kind, client, RedisConfig{Prefix: prefix})
	m := gsession.New(ttl, st)
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = NewSessionId()
		atkReq(t, m, ids[i], func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })
	}
	counter.reset()
	reads := 0
	deadline := time.Now().Add(800 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			start := time.Now()
			atkLoad(t, st, id, ttl)
			reads++
			if !atkAssertSlides(t, client, prefix+Handle(id), ttl, start, "load %d", reads) {
				return
			}
		}
	}
	restarts, plain := counter.restarts.Load(), counter.plain.Load()
	t.Logf("%d loads: %d restarted the TTL, %d plain", reads, restarts, plain)
	assert.Equal(t, int64(reads), restarts+plain, "one load command per load")
	assert.GreaterOrEqual(t, restarts, int64(len(ids)), "every session's first load restarts its TTL")
	assert.Positive(t, plain, "no load was a plain read")
}

// TestRefreshAttack_ClusterSlides checks the sliding promise and the plain
// reads on a Redis Cluster, whose sessions live on several masters.
func TestRefreshAttack_ClusterSlides(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	client := atkClient(t, &gredis.Config{Address: strings.Join(cl.Addrs, ","), Cluster: true})
	counter := &atkCounter{}
	atkRaw(t, client).AddHook(counter)
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) { atkSlideRun(t, client, counter, kind) })
	}
}

// TestRefreshAttack_SentinelSlides checks the same through Sentinel.
func TestRefreshAttack_SentinelSlides(t *testing.T) {
	se := testredis.StartSentinel(t, 1, testredis.SentinelOptions{DownAfter: 10 * time.Second})
	client := atkClient(t, &gredis.Config{Address: strings.Join(se.SentinelAddrs, ","), MasterName: se.MasterName})
	counter := &atkCounter{}
	atkRaw(t, client).AddHook(counter)
	for _, kind := range atkKinds {
		t.Run(kind, func(t *testing.T) { atkSlideRun(t, client, counter, kind) })
	}
}
