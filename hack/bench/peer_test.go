package main

// BenchmarkPeer puts gfsession next to alexedwards/scs v2, the most used Go
// session manager that, like gfsession, gives every request its own copy of
// the session (scs decodes the stored bytes on each Load), doing the work of
// the module's BenchmarkLifecycle (gfsession_z_bench_test.go in the module
// root) on the same session sizes:
//
//	rw: load, 3 gets, 1 set, commit/close
//	ro: load, 3 gets, close (scs: what LoadAndSave does after the handler)
//
// Backends: memory (scs memstore against gfsession.NewStorageMemory, both
// driven as a request would: scs through SessionManager, gfsession through
// gsession.Manager) and redis (scs redisstore over gomodule/redigo against
// gfsession.NewStorageRedis over gf's go-redis adapter, on one private
// redis-server). Both sides have a sliding idle TTL of one hour
// (scs: IdleTimeout; gfsession: the Manager's TTL).
//
// Names: BenchmarkPeer/<backend>/<size>/<mode>/<impl>, impl gfsession or
// scs, so that the two rows of a pair follow each other. Run with
//
//	go test -run '^$' -bench Peer -benchtime 300ms -count 5 -cpu 1
//
// Extra metrics: miss/op (a key that should have been there was not) and,
// for redis, cmds/op (INFO commandstats deltas, MULTI and EXEC included)
// and redis-cpu-µs/op (INFO cpu deltas).

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gomodule/redigo/redis"

	"github.com/goframe-contrib/gfsession"
)

const (
	// peerTTL is the sliding idle TTL of both managers.
	peerTTL = time.Hour
	// peerWorkingSet is how many sessions each row cycles through.
	peerWorkingSet = 1024
)

var peerSizes = []struct {
	name string
	keys int
}{{"1key", 1}, {"10keys", 10}, {"100keys", 100}}

// peerImpl is one side of a pair: fill creates the working set before the
// timer and returns a request function for session i of it.
type peerImpl struct {
	name string
	fill func(b *testing.B, keys int) (request func(i int, write bool) int, release func())
}

func BenchmarkPeer(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		peerRows(b, nil, []peerImpl{
			{"gfsession", func(b *testing.B, keys int) (func(int, bool) int, func()) {
				st := gfsession.NewStorageMemory()
				return gfsessionImpl(b, st, keys), func() { _ = st.Close(context.Background()) }
			}},
			{"scs", func(b *testing.B, keys int) (func(int, bool) int, func()) {
				st := memstore.New()
				return scsImpl(b, st, keys), st.StopCleanup
			}},
		})
	})
	b.Run("redis", func(b *testing.B) {
		srv, err := startRedis(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(srv.stop)
		b.Logf("redis-server %s on %s", srv.version, srv.addr)
		client, err := gredis.New(&gredis.Config{Address: srv.addr})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = client.Close(context.Background()) })
		pool := &redis.Pool{
			MaxIdle: 16,
			Dial:    func() (redis.Conn, error) { return redis.Dial("tcp", srv.addr) },
		}
		b.Cleanup(func() { _ = pool.Close() })
		peerRows(b, srv, []peerImpl{
			{"gfsession", func(b *testing.B, keys int) (func(int, bool) int, func()) {
				st, err := gfsession.NewStorageRedis(client, gfsession.RedisConfig{Prefix: "peer:gfsession:"})
				if err != nil {
					b.Fatal(err)
				}
				return gfsessionImpl(b, st, keys), func() { _ = st.Close(context.Background()) }
			}},
			{"scs", func(b *testing.B, keys int) (func(int, bool) int, func()) {
				return scsImpl(b, redisstore.NewWithPrefix(pool, "peer:scs:"), keys), func() {}
			}},
		})
	})
}

// peerRows runs the rows of one backend: per size, both working sets are
// filled first, then each mode runs on both implementations in turn.
func peerRows(b *testing.B, srv *redisServer, impls []peerImpl) {
	for _, size := range peerSizes {
		peerSize(b, srv, impls, size.name, size.keys)
	}
}

// peerSize fills the working sets of one size, runs its rows and releases
// the stores.
func peerSize(b *testing.B, srv *redisServer, impls []peerImpl, name string, keys int) {
	requests := make([]func(int, bool) int, len(impls))
	for i, impl := range impls {
		req, release := impl.fill(b, keys)
		defer release()
		requests[i] = req
	}
	b.Run(name, func(b *testing.B) {
		for _, mode := range []string{"rw", "ro"} {
			write := mode == "rw"
			b.Run(mode, func(b *testing.B) {
				for i, impl := range impls {
					req := requests[i]
					b.Run(impl.name, func(b *testing.B) {
						var calls0 int64
						var cpu0 float64
						if srv != nil {
							calls0, cpu0 = peerRedisStats(b, srv)
						}
						misses := 0
						b.ReportAllocs()
						b.ResetTimer()
						for n := 0; n < b.N; n++ {
							misses += req(n, write)
						}
						b.StopTimer()
						b.ReportMetric(float64(misses)/float64(b.N), "miss/op")
						if srv != nil {
							calls, cpu := peerRedisStats(b, srv)
							b.ReportMetric(float64(calls-calls0)/float64(b.N), "cmds/op")
							b.ReportMetric((cpu-cpu0)*1e6/float64(b.N), "redis-cpu-µs/op")
						}
					})
				}
			})
		}
	})
}

func peerRedisStats(b *testing.B, srv *redisServer) (int64, float64) {
	calls, cpu, err := srv.calls()
	if err != nil {
		b.Fatal(err)
	}
	return calls, cpu
}

// peerKey and peerValue make the data of working-set session i: the same
// strings on both sides.
func peerKey(k int) string { return "key" + strconv.Itoa(k) }

func peerValue(i, k int) string { return fmt.Sprintf("v%03d-%012d", k, i) }

// peerGets are the keys every request reads: key0, key1, key2 (modulo the
// session size, as BenchmarkLifecycle does); rw sets key0.
func peerGets(keys int) [3]string {
	var g [3]string
	for i := range g {
		g[i] = peerKey(i % keys)
	}
	return g
}

// gfsessionImpl fills a working set in `st` through gsession.Manager and
// returns the lifecycle of BenchmarkLifecycle on session i%len(ids).
func gfsessionImpl(b *testing.B, st gsession.Storage, keys int) func(int, bool) int {
	ctx := context.Background()
	m := gsession.New(peerTTL, st)
	ids := make([]string, peerWorkingSet)
	for i := range ids {
		ids[i] = gfsession.NewSessionId()
		s := m.New(ctx, ids[i])
		data := make(map[string]any, keys)
		for k := 0; k < keys; k++ {
			data[peerKey(k)] = peerValue(i, k)
		}
		if err := s.SetMap(data); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	gets := peerGets(keys)
	var seq int64
	return func(i int, write bool) int {
		s := m.New(ctx, ids[i%len(ids)])
		miss := 0
		for _, k := range gets {
			v, err := s.Get(k)
			if err != nil {
				panic(err)
			}
			if v == nil {
				miss = 1
			}
		}
		if write {
			seq++
			if err := s.Set(gets[0], seq); err != nil {
				panic(err)
			}
		}
		if err := s.Close(); err != nil {
			panic(err)
		}
		return miss
	}
}

// scsImpl fills a working set in `store` through an scs.SessionManager with
// a sliding IdleTimeout and returns, for session i%len(tokens), what a
// request through LoadAndSave does: Load, 3 Gets, (1 Put,) then
// scsRequestEnd.
//
// Reads use Get, not GetString: rw writes an int64 (as BenchmarkLifecycle
// does), which GetString would turn into "" (GetString is Get plus a type
// assertion, the cost is the same).
func scsImpl(b *testing.B, store scs.Store, keys int) func(int, bool) int {
	sm := scs.New()
	sm.Store = store
	sm.IdleTimeout = peerTTL
	bg := context.Background()
	tokens := make([]string, peerWorkingSet)
	for i := range tokens {
		ctx, err := sm.Load(bg, "")
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < keys; k++ {
			sm.Put(ctx, peerKey(k), peerValue(i, k))
		}
		if tokens[i], _, err = sm.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	gets := peerGets(keys)
	var seq int64
	return func(i int, write bool) int {
		ctx, err := sm.Load(bg, tokens[i%len(tokens)])
		if err != nil {
			panic(err)
		}
		miss := 0
		for _, k := range gets {
			if sm.Get(ctx, k) == nil {
				miss = 1
			}
		}
		if write {
			seq++
			sm.Put(ctx, gets[0], seq)
		}
		if err := scsRequestEnd(ctx, sm); err != nil {
			panic(err)
		}
		return miss
	}
}

// scsRequestEnd does what scs's LoadAndSave middleware does once the handler
// has returned (commitAndWriteSessionCookie in session.go of scs v2.9.0),
// without the cookie: it commits the session when its Status is Modified.
// With IdleTimeout set, Load marks every session it found Modified "to force
// the session data to be re-committed to the session store with a new expiry
// time" (Load in data.go of scs v2.9.0), so read-only requests commit too:
// encode the whole session (gob) and write it (memstore: replace the map
// entry; redisstore: MULTI, SET, PEXPIREAT, EXEC in one round trip). A
// Destroyed session only gets a deleting cookie, and an Unmodified one
// nothing; neither happens here.
func scsRequestEnd(ctx context.Context, sm *scs.SessionManager) error {
	switch sm.Status(ctx) {
	case scs.Modified:
		_, _, err := sm.Commit(ctx)
		return err
	case scs.Destroyed:
		// Cookie only.
	}
	return nil
}
