package gfsession_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// Redis Cluster, Sentinel, failover and outage.

func TestStorageRedis_Cluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	// gredis: several addresses (or Cluster: true) make a cluster client.
	client := newGredis(t, &gredis.Config{Address: strings.Join(cl.Addrs, ","), Cluster: true})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) { runRedisConformance(t, kind, client, true) })
	}
	for _, kind := range redisKinds {
		t.Run(kind+"/Spread", func(t *testing.T) { testRedisClusterSpread(t, cl, client, kind) })
	}
	for _, kind := range redisKinds {
		t.Run(kind+"/ClusterAdmin", func(t *testing.T) { testRedisClusterAdmin(t, cl, client, kind) })
	}
	for _, kind := range redisKinds {
		t.Run(kind+"/SessionLimit", func(t *testing.T) { concurrentLogins(t, redisLimitedStorages(t, kind, client, 2), 2) })
	}
}

// testRedisClusterSpread checks that sessions are spread over the masters:
// of N sessions, each master holds at least one, and together they hold
// exactly the N session keys. With 64 random ids a master holds none with a
// probability of 3 * (2/3)^64, about 1e-11; one that holds none means the
// keys share a hash slot (a hash tag in the key), so the cluster serves
// every session from one master.
func testRedisClusterSpread(t *testing.T, cl *testredis.Cluster, client *gredis.Redis, kind string) {
	const sessions = 64
	prefix := redisTestPrefix()
	m := gsession.New(time.Minute, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix}))
	for i := 0; i < sessions; i++ {
		redisReq(t, m, gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("i", i)) })
	}
	total := int64(0)
	for _, node := range cl.Nodes {
		role, ok := node.MustDo(t, "ROLE").([]any)
		require.True(t, ok && len(role) > 0)
		require.Equal(t, "master", fmt.Sprint(role[0]), "node %s", node.Addr)
		held, ok := node.MustDo(t, "EVAL", `return #redis.call('KEYS', ARGV[1])`, "0", prefix+"*").(int64)
		require.True(t, ok)
		assert.Positive(t, held, "master %s holds none of %d sessions: they are not spread over the cluster", node.Addr, sessions)
		t.Logf("master %s holds %d of %d sessions", node.Addr, held, sessions)
		total += held
	}
	assert.EqualValues(t, sessions, total, "the masters together hold one key per session")
}

// testRedisClusterAdmin checks that Count and Range see the sessions of
// every master (SCAN on each, never KEYS) and that DestroyUser reaches
// sessions in other slots than the user's index.
func testRedisClusterAdmin(t *testing.T, cl *testredis.Cluster, client *gredis.Redis, kind string) {
	const perUser = 40
	ctx := context.Background()
	prefix := redisTestPrefix()
	st := newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid"})
	a := redisAdmin(t, st)
	m := gsession.New(time.Hour, st)
	ids := map[string]string{} // session id -> user
	for _, user := range []string{"ann", "bob"} {
		for i := 0; i < perUser; i++ {
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": user, "i": i})) })
			ids[id] = user
		}
	}
	for _, node := range cl.Nodes {
		node.MustDo(t, "CONFIG", "RESETSTAT")
	}
	n, err := a.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(ids), n, "Count over every master")
	seen := map[string]bool{}
	require.NoError(t, a.Range(ctx, func(id string) bool { seen[id] = true; return true }))
	assert.Len(t, seen, len(ids))
	for id := range ids {
		assert.True(t, seen[gfsession.Handle(id)], "Range missed %s", id)
	}
	for _, node := range cl.Nodes {
		stats := redisCommandStats(t, node)
		assert.Positive(t, stats["scan"], "node %s was not scanned", node.Addr)
		assert.Zero(t, stats["keys"], "KEYS was sent to %s", node.Addr)
		held, ok := node.MustDo(t, "EVAL", `return #redis.call('KEYS', ARGV[1])`, "0", prefix+"*").(int64)
		require.True(t, ok)
		assert.Positive(t, held, "node %s holds none of the sessions: the test proves nothing", node.Addr)
		t.Logf("%s: node %s holds %d keys of the test, was sent %d SCANs", kind, node.Addr, held, stats["scan"])
	}

	n, err = a.DestroyUser(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, perUser, n)
	for id, user := range ids {
		redisReq(t, m, id, func(s *gsession.Session) {
			if user == "ann" {
				assert.True(t, s.MustGet("uid").IsNil(), "ann's session %s survived", id)
			} else {
				assert.Equal(t, "bob", s.MustGet("uid").String(), "bob's session %s was destroyed", id)
			}
		})
	}
	n, err = a.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, perUser, n)
}

func TestStorageRedis_Sentinel(t *testing.T) {
	// No failover may happen here: a 500ms down-after let a stalled -race run
	// promote the replica mid-test and lose a write.
	se := testredis.StartSentinel(t, 2, testredis.SentinelOptions{DownAfter: 10 * time.Second})
	// gredis: MasterName plus the sentinel addresses make a failover client.
	client := newGredis(t, &gredis.Config{Address: strings.Join(se.SentinelAddrs, ","), MasterName: se.MasterName})
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) { runRedisConformance(t, kind, client, true) })
	}
}

// infoInt returns an integer field of an INFO reply.
func infoInt(t *testing.T, srv *testredis.Server, section, field string) int64 {
	t.Helper()
	info, _ := srv.MustDo(t, "INFO", section).(string)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in INFO %s", field, section)
	return 0
}

// loadGenerator runs requests on `m` from a few goroutines until stopped,
// each on a session of its own, and records errors and the slowest failed
// request.
type loadGenerator struct {
	ok, failed atomic.Int64
	slowest    atomic.Int64 // ns, of a failed request
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, m *gsession.Manager, workers int) *loadGenerator {
	l := &loadGenerator{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			id := gfsession.NewSessionId()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				err := func() error {
					s := m.New(context.Background(), id)
					if _, err := s.Get("n"); err != nil {
						return err
					}
					if i%2 == 0 {
						if err := s.Set("n", i); err != nil {
							return err
						}
					}
					return s.Close()
				}()
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				if d := int64(time.Since(start)); d > l.slowest.Load() {
					l.slowest.Store(d)
				}
				time.Sleep(10 * time.Millisecond) // do not spin on a dead server
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *loadGenerator) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func TestStorageRedis_SentinelFailover(t *testing.T) {
	se := testredis.StartSentinel(t, 2)
	client := newGredis(t, &gredis.Config{
		Address:    strings.Join(se.SentinelAddrs, ","),
		MasterName: se.MasterName,
		// Fail fast while the master is gone.
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	const sessions = 20
	type written struct {
		m   *gsession.Manager
		ids []string
	}
	all := map[string]*written{}
	for _, kind := range redisKinds {
		w := &written{m: gsession.New(time.Minute, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix()}))}
		for i := 0; i < sessions; i++ {
			id := gfsession.NewSessionId()
			redisReq(t, w.m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"user": id, "i": i})) })
			w.ids = append(w.ids, id)
		}
		all[kind] = w
	}
	// Replication is asynchronous: the writes above are safe from the kill
	// only once the replica has them. Wait until its offset reaches the
	// master's (the master also has appendfsync always, see testredis).
	offset := infoInt(t, se.Master, "replication", "master_repl_offset")
	require.Eventually(t, func() bool {
		return infoInt(t, se.Replica, "replication", "slave_repl_offset") >= offset
	}, 10*time.Second, 10*time.Millisecond, "replica never caught up")

	var loads []*loadGenerator
	for _, kind := range redisKinds {
		loads = append(loads, startLoad(t, all[kind].m, 2))
	}
	require.Eventually(t, func() bool { return loads[0].ok.Load() > 10 && loads[1].ok.Load() > 10 }, 10*time.Second, 10*time.Millisecond)

	old := se.Master.Addr
	killed := time.Now()
	se.Master.Kill(t)
	newMaster := se.WaitMaster(t, old, 30*time.Second)
	t.Logf("failover: %s -> %s in %v", old, newMaster, time.Since(killed))

	// Requests succeed again on the new master, without a new storage.
	for _, l := range loads {
		before := l.ok.Load()
		require.Eventually(t, func() bool { return l.ok.Load() > before+10 }, 30*time.Second, 20*time.Millisecond,
			"requests never recovered after the failover")
	}
	for _, l := range loads {
		l.halt()
		t.Logf("load: %d ok, %d failed, slowest failure %v", l.ok.Load(), l.failed.Load(), time.Duration(l.slowest.Load()))
	}
	for kind, w := range all {
		for i, id := range w.ids {
			redisReq(t, w.m, id, func(s *gsession.Session) {
				assert.Equal(t, id, s.MustGet("user").String(), "%s: session %d lost in the failover", kind, i)
				assert.Equal(t, i, s.MustGet("i").Int(), "%s: session %d", kind, i)
			})
		}
	}
}

func TestStorageRedis_Outage(t *testing.T) {
	// Not parallel, so that the goroutine count means something.
	srv := testredis.Start(t, testredis.Options{Persistence: true}) // appendfsync always: Restart loses nothing
	ctx := context.Background()
	const timeout = 500 * time.Millisecond
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) {
			if !srv.Running() {
				srv.Restart(t)
			}
			baseline := runtime.NumGoroutine()
			st, err := gfsession.New(ctx, map[string]any{
				"type": kind, "address": srv.Addr, "prefix": redisTestPrefix(),
				"dialTimeout": "500ms", "readTimeout": "500ms", "writeTimeout": "500ms",
			})
			require.NoError(t, err)
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

			load := startLoad(t, m, 3)
			require.Eventually(t, func() bool { return load.ok.Load() > 10 }, 10*time.Second, 10*time.Millisecond)

			// Killed: requests fail, quickly, and nothing panics.
			srv.Kill(t)
			require.Eventually(t, func() bool { return load.failed.Load() >= 10 }, 10*time.Second, 10*time.Millisecond)
			s := m.New(ctx, id)
			_, err = s.Get("user")
			require.Error(t, err, "a request during the outage must fail")
			_ = s.Close()

			// Hung (SIGSTOP): requests fail after the read timeout, not never.
			srv.Restart(t)
			redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
			srv.Pause(t)
			start := time.Now()
			_, err = st.GetSession(ctx, id, time.Minute)
			require.Error(t, err, "a request to a hung server must fail")
			assert.Less(t, time.Since(start), 4*timeout, "hung server: no error within the timeout")
			srv.Resume(t)

			// Back: the same storage serves again, data intact.
			before := load.ok.Load()
			require.Eventually(t, func() bool { return load.ok.Load() > before+10 }, 10*time.Second, 10*time.Millisecond,
				"the storage did not recover after the server came back")
			redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
			load.halt()
			t.Logf("load: %d ok, %d failed, slowest failure %v", load.ok.Load(), load.failed.Load(), time.Duration(load.slowest.Load()))
			assert.Less(t, time.Duration(load.slowest.Load()), 4*timeout, "a failing request took longer than the timeout")

			require.NoError(t, st.(redisStorage).Close(ctx))
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+1 }, 5*time.Second, 10*time.Millisecond,
				"goroutines leaked: %d before, %d after", baseline, runtime.NumGoroutine())
		})
	}
}

// TestStorageRedis_GroupTimeout checks that a storage on a gf redis group
// that sets no timeouts (gf's client then waits without limit) still fails
// within DefaultRedisTimeout when Redis stops answering, and recovers: for a
// group registered in code and for one of the config file.
func TestStorageRedis_GroupTimeout(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	for _, how := range []string{"gredis.SetConfig", "config file"} {
		t.Run(how, func(t *testing.T) {
			group := fmt.Sprintf("group-timeout-%d", time.Now().UnixNano())
			if how == "config file" {
				useConfigFile(t, fmt.Sprintf("redis:\n  %s:\n    address: %q\n", group, srv.Addr))
			} else {
				require.NoError(t, gredis.SetConfigByMap(map[string]any{"address": srv.Addr}, group))
				t.Cleanup(func() { gredis.RemoveConfig(group) })
			}
			st, err := gfsession.New(ctx, map[string]any{"type": "redis", "redis": group, "prefix": redisTestPrefix()})
			require.NoError(t, err)
			m := gsession.New(time.Minute, st)
			id := gfsession.NewSessionId()
			redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Set("user", "ann")) })

			srv.Pause(t)
			start := time.Now()
			_, err = st.GetSession(ctx, id, time.Minute)
			elapsed := time.Since(start)
			srv.Resume(t)
			require.Error(t, err, "a request to a hung server must fail")
			assert.Less(t, elapsed, gfsession.DefaultRedisTimeout+2*time.Second, "hung server: no error within the default timeout")

			redisReq(t, m, id, func(s *gsession.Session) { assert.Equal(t, "ann", s.MustGet("user").String()) })
			require.NoError(t, st.(redisStorage).Close(ctx))
			// The storage closed its own client, not the group's.
			_, err = g.Redis(group).Do(ctx, "PING")
			assert.NoError(t, err)
		})
	}
}
