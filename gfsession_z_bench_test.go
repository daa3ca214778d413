package gfsession_test

// Benchmarks of the full session lifecycle through gsession.Manager, each
// storage side by side with gf's built-in storage of the same kind, on the
// same backend, in the same run (docs/benchmarks.md). `go test ./...` runs
// none of this; run them with
//
//	go test -run '^$' -bench BenchmarkLifecycle -benchmem -cpu 1,2 -timeout 60m .
//
// or everything, with the HTTP load run and the report, with
// `cd hack/bench && go run .` (see docs/benchmarks.md).
//
// Names: BenchmarkLifecycle/<backend>/<impl>/<size>/<mode>/<serial|parallel>
//
//	backend  memory-1k, memory-1M (live sessions), file-100k (session files),
//	         redis, redis-hash (each backend file registers its own rows)
//	impl     gfsession (this module) or gf (gf's built-in of the same kind)
//	size     1key, 10keys or 100keys: keys in each session the benchmark
//	         touches (10 is a typical session: a user id, a name, roles, a
//	         CSRF token, a flash message and a few more)
//	mode     rw: load, 3 gets, 1 set, close; ro: load, 3 gets, close
//
// Every operation picks one of benchWorkingSet pre-filled sessions at random
// (the "working set", of the given size); backends with a live population
// hold that many sessions in all, the working set included, the others being
// 1-key sessions, so that lookups run against a full map or directory.
//
// Extra metrics: B/session and overhead-B/session (memory-1M: heap bytes
// per live session, and that minus what a bare map[id]map[key]value of the
// same sessions takes), miss/op (a session or key that should have been
// there was not: gf's file storage truncates before it writes), cmds/op
// (Redis commands per operation from INFO commandstats deltas),
// redis-cpu-µs/op (CPU time of redis-server per operation, from INFO cpu
// deltas) and rt/op
// (Redis round trips per operation, counted by a proxy in a separate pass).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/os/gcache"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
)

const (
	// benchTTL is the idle TTL of every benchmark session. gf's Redis and
	// file storages only refresh TTLs of 10 s and more, so use a real one.
	benchTTL = time.Hour
	// benchWorkingSet is how many sessions the operations pick from.
	benchWorkingSet = 1024
)

// benchBackend is one backend row of BenchmarkLifecycle.
type benchBackend struct {
	name  string // e.g. "memory-1M"
	order int    // position in the run
	// live is how many sessions exist during the measurement, the working
	// set included; 0 means the working set only.
	live int
	// footprint reports B/session after filling the population (memory).
	footprint bool
	// setup runs once per backend (the -cpu values are looped over in the
	// leaves): it starts what the backend needs and returns the
	// implementations to compare.
	setup func(b *testing.B) benchEnv
}

// benchEnv is what a backend's setup returns.
type benchEnv struct {
	impls []benchImpl
	// redis, when set, is asked for INFO commandstats around each run.
	redis interface {
		Do(args ...string) (any, error)
	}
}

// benchImpl is one storage implementation of a backend.
type benchImpl struct {
	name string // "gfsession" or "gf"
	// open returns the storage measured and a function releasing it.
	open func(b *testing.B) (gsession.Storage, func())
	// filled, when set, returns a storage whose population (live minus the
	// working set) is already there, e.g. kept from an earlier -cpu pass;
	// it is used instead of open plus filling.
	filled func(b *testing.B, n int) (gsession.Storage, func())
	// counted, when set, returns a second storage on the same data whose
	// Redis traffic goes through a round-trip counting proxy, and the
	// counter.
	counted func(b *testing.B) (gsession.Storage, *atomic.Int64, func())
}

var (
	benchBackendsMu sync.Mutex
	benchBackends   []benchBackend
)

// registerBenchBackend adds a backend row; each backend's bench file calls
// it from init.
func registerBenchBackend(be benchBackend) {
	benchBackendsMu.Lock()
	defer benchBackendsMu.Unlock()
	benchBackends = append(benchBackends, be)
	sort.SliceStable(benchBackends, func(i, j int) bool { return benchBackends[i].order < benchBackends[j].order })
}

var benchSizes = []struct {
	name string
	keys int
}{{"1key", 1}, {"10keys", 10}, {"100keys", 100}}

func BenchmarkLifecycle(b *testing.B) {
	benchBackendsMu.Lock()
	backends := append([]benchBackend(nil), benchBackends...)
	benchBackendsMu.Unlock()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			env := be.setup(b)
			for _, impl := range env.impls {
				b.Run(impl.name, func(b *testing.B) { benchImplRows(b, be, env, impl) })
			}
		})
	}
}

// benchImplRows fills the population of one implementation and runs its
// rows, one working set (size) at a time.
func benchImplRows(b *testing.B, be benchBackend, env benchEnv, impl benchImpl) {
	ctx := context.Background()
	filler := 0
	if be.live > benchWorkingSet {
		filler = be.live - benchWorkingSet
	}
	var (
		st      gsession.Storage
		release func()
		fp      footprint
	)
	switch {
	case impl.filled != nil:
		st, release = impl.filled(b, filler)
	case be.footprint:
		st, release = impl.open(b)
		// The id slice is made outside the measurement; the ids themselves
		// are made inside it, as the storage keeps them.
		fillerIds := make([]string, filler)
		fp = measureFootprint(b, filler, func() { fillSessions(b, st, fillerIds, 1, runtime.GOMAXPROCS(0)) })
		runtime.KeepAlive(fillerIds)
	default:
		st, release = impl.open(b)
		fillSessions(b, st, make([]string, filler), 1, runtime.GOMAXPROCS(0)*2)
	}
	defer release()
	var (
		counted gsession.Storage
		counter *atomic.Int64
	)
	if impl.counted != nil {
		var releaseCounted func()
		counted, counter, releaseCounted = impl.counted(b)
		defer releaseCounted()
	}
	m := gsession.New(benchTTL, st)
	for _, size := range benchSizes {
		ids := fillSessions(b, st, make([]string, benchWorkingSet), size.keys, runtime.GOMAXPROCS(0)*2)
		op := newBenchOp(size.keys)
		b.Run(size.name, func(b *testing.B) {
			for _, mode := range []string{"rw", "ro"} {
				write := mode == "rw"
				b.Run(mode, func(b *testing.B) {
					var rtPerOp float64 = -1
					if counted != nil {
						rtPerOp = countRoundTrips(b, gsession.New(benchTTL, counted), counter, ids, op, write)
					}
					report := func(b *testing.B, misses *atomic.Int64, cmds0 redisStats) {
						if fp.perSession > 0 {
							b.ReportMetric(fp.perSession, "B/session")
							b.ReportMetric(fp.perSession-fp.bare, "overhead-B/session")
						}
						b.ReportMetric(float64(misses.Load())/float64(b.N), "miss/op")
						if env.redis != nil {
							st := redisCalls(b, env.redis)
							b.ReportMetric(float64(st.calls-cmds0.calls)/float64(b.N), "cmds/op")
							b.ReportMetric((st.cpu-cmds0.cpu)*1e6/float64(b.N), "redis-cpu-µs/op")
						}
						if rtPerOp >= 0 {
							b.ReportMetric(rtPerOp, "rt/op")
						}
					}
					b.Run("serial", func(b *testing.B) {
						var (
							misses atomic.Int64
							rng    = rand.New(rand.NewPCG(1, 2))
							cmds0  = redisCallsIf(b, env.redis)
						)
						b.ReportAllocs()
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							misses.Add(int64(op.run(ctx, m, ids[rng.IntN(len(ids))], write, i)))
						}
						b.StopTimer()
						report(b, &misses, cmds0)
					})
					b.Run("parallel", func(b *testing.B) {
						var (
							misses atomic.Int64
							seed   atomic.Uint64
							cmds0  = redisCallsIf(b, env.redis)
						)
						b.ReportAllocs()
						b.ResetTimer()
						b.RunParallel(func(pb *testing.PB) {
							var (
								g   = seed.Add(1)
								rng = rand.New(rand.NewPCG(g, 7))
								n   int
								i   = int(g) << 20
							)
							for pb.Next() {
								n += op.run(ctx, m, ids[rng.IntN(len(ids))], write, i)
								i++
							}
							misses.Add(int64(n))
						})
						b.StopTimer()
						report(b, &misses, cmds0)
					})
				})
			}
		})
		for _, id := range ids {
			if err := st.RemoveAll(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchOp is one request's worth of session work.
type benchOp struct {
	gets   [3]string    // keys read
	setKey string       // key written by rw
	seq    atomic.Int64 // values written: each one new
}

func newBenchOp(keys int) *benchOp {
	op := &benchOp{setKey: benchKey(0)}
	for i := range op.gets {
		op.gets[i] = benchKey(i % keys)
	}
	return op
}

func benchKey(i int) string { return "key" + strconv.Itoa(i) }

// run does one lifecycle on session id: load, 3 gets, (1 set,) close. It
// returns 1 when a get found nothing (a lost session or key) and 0 otherwise;
// other errors fail loudly through a panic, which no storage here should
// ever cause.
func (op *benchOp) run(ctx context.Context, m *gsession.Manager, id string, write bool, i int) int {
	s := m.New(ctx, id)
	miss := 0
	for _, k := range op.gets {
		v, err := s.Get(k)
		if err != nil {
			panic(fmt.Sprintf("Get(%q): %v", k, err))
		}
		if v == nil {
			miss = 1
		}
	}
	if write {
		// A value never written before (an int64: no formatting cost), so
		// that every storage has something to write.
		if err := s.Set(op.setKey, op.seq.Add(1)); err != nil {
			panic(fmt.Sprintf("Set: %v", err))
		}
	}
	if err := s.Close(); err != nil {
		panic(fmt.Sprintf("Close: %v", err))
	}
	return miss
}

// sessionData returns the data of benchmark session i with `keys` keys.
func sessionData(i, keys int) map[string]any {
	data := make(map[string]any, keys)
	for k := 0; k < keys; k++ {
		data[benchKey(k)] = fmt.Sprintf("v%03d-%012d", k, i)
	}
	return data
}

// fillSessions creates len(ids) sessions of `keys` keys each through the
// Manager, as a request would (so that every storage, gf's Redis hash one
// included, stores them its own way), with `workers` goroutines, and
// returns ids, holding their ids.
func fillSessions(b *testing.B, st gsession.Storage, ids []string, keys, workers int) []string {
	b.Helper()
	n := len(ids)
	if n == 0 {
		return ids
	}
	// Filling a million sessions is mostly garbage collection of a growing
	// heap: collect less often meanwhile (the measurements run at the
	// default GOGC).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	start := time.Now()
	defer func() {
		b.Logf("filled %d sessions of %d keys in %v", n, keys, time.Since(start).Round(time.Millisecond))
	}()
	var (
		ctx  = context.Background()
		m    = gsession.New(benchTTL, st)
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	if workers < 1 {
		workers = 1
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id := gfsession.NewSessionId()
				s := m.New(ctx, id)
				if err := s.SetMap(sessionData(i, keys)); err != nil {
					errs <- err
					return
				}
				if err := s.Close(); err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("filling %d sessions: %v", n, err)
	}
	return ids
}

// footprint is the heap taken per live session.
type footprint struct {
	perSession float64 // bytes per session in the storage
	bare       float64 // bytes per session in a bare map[id]map[key]value
}

// measureFootprint runs fill (which creates n sessions) and returns the heap
// growth per session, next to that of a bare Go map of the same data.
func measureFootprint(b *testing.B, n int, fill func()) footprint {
	b.Helper()
	if n == 0 {
		return footprint{}
	}
	per := heapGrowth(fill) / float64(n)
	bareOnce.Do(func() {
		var (
			bare map[string]map[string]any
			ids  = make([]string, n)
		)
		bareBytes = heapGrowth(func() {
			bare = make(map[string]map[string]any)
			for i := range ids {
				ids[i] = gfsession.NewSessionId()
				bare[ids[i]] = sessionData(i, 1)
			}
		}) / float64(n)
		runtime.KeepAlive(bare)
		runtime.KeepAlive(ids)
	})
	b.Logf("%s: %.0f B/session (bare map: %.0f)", b.Name(), per, bareBytes)
	return footprint{perSession: per, bare: bareBytes}
}

var (
	bareOnce  sync.Once
	bareBytes float64
)

// heapGrowth returns how much the live heap grew across f, after garbage
// collection. Storages may finish work in the background (gf's gcache moves
// expiry events into its index once a second; cleanups registered with
// runtime.AddCleanup keep what they reference until they have run), so it
// collects until the heap stops shrinking, before and after.
func heapGrowth(f func()) float64 {
	before := settledHeap()
	f()
	time.Sleep(1500 * time.Millisecond)
	return float64(int64(settledHeap()) - int64(before))
}

// settledHeap collects garbage until HeapAlloc changes by less than 0.5%
// between two rounds, and returns it.
func settledHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	last := ms.HeapAlloc
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		diff := int64(last) - int64(ms.HeapAlloc)
		if diff < 0 {
			diff = -diff
		}
		last = ms.HeapAlloc
		if diff*200 < int64(ms.HeapAlloc) {
			break
		}
	}
	return last
}

// ---------------------------------------------------------------------------
// Redis accounting

// redisStats is a reading of a Redis server's counters.
type redisStats struct {
	calls int64   // commands run, INFO excluded (INFO commandstats)
	cpu   float64 // seconds of CPU the server used (INFO cpu, user + sys)
}

// redisCallsIf returns redisCalls, or zeros without a Redis.
func redisCallsIf(b *testing.B, r interface{ Do(...string) (any, error) }) redisStats {
	if r == nil {
		return redisStats{}
	}
	return redisCalls(b, r)
}

// redisCalls reads the server's command count and CPU time.
func redisCalls(b *testing.B, r interface{ Do(...string) (any, error) }) redisStats {
	var st redisStats
	for _, section := range []string{"commandstats", "cpu"} {
		v, err := r.Do("INFO", section)
		if err != nil {
			b.Fatalf("INFO %s: %v", section, err)
		}
		s, _ := v.(string)
		c, cpu := parseRedisInfo(s)
		st.calls += c
		st.cpu += cpu
	}
	return st
}

// parseRedisInfo sums calls= over the cmdstat_ lines of INFO commandstats,
// leaving out INFO itself, and used_cpu_user + used_cpu_sys of INFO cpu.
func parseRedisInfo(info string) (calls int64, cpu float64) {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			v, _ := strconv.ParseFloat(rest, 64)
			cpu += v
			continue
		}
		if !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				calls += n
			}
		}
	}
	return calls, cpu
}

// roundTripCache keeps rt/op per row: the counting pass runs once per row
// although the testing package calls a benchmark several times.
var roundTripCache sync.Map

// countRoundTrips runs a few lifecycles, untimed, through a storage whose
// Redis client talks through the counting proxy, and returns the round
// trips per lifecycle.
func countRoundTrips(b *testing.B, m *gsession.Manager, counter *atomic.Int64, ids []string, op *benchOp, write bool) float64 {
	key := b.Name() + "/" + strconv.Itoa(runtime.GOMAXPROCS(0))
	if v, ok := roundTripCache.Load(key); ok {
		return v.(float64)
	}
	const warm, n = 20, 200
	ctx := context.Background()
	for i := 0; i < warm; i++ {
		op.run(ctx, m, ids[i%len(ids)], write, i)
	}
	start := counter.Load()
	for i := 0; i < n; i++ {
		op.run(ctx, m, ids[(i*7)%len(ids)], write, i)
	}
	rt := float64(counter.Load()-start) / n
	roundTripCache.Store(key, rt)
	return rt
}

// ---------------------------------------------------------------------------
// memory

func init() {
	for _, p := range []struct {
		name string
		live int
	}{{"memory-1k", 1 << 10}, {"memory-1M", 1 << 20}} {
		registerBenchBackend(benchBackend{
			name:      p.name,
			order:     10,
			live:      p.live,
			footprint: p.live > benchWorkingSet,
			setup: func(b *testing.B) benchEnv {
				return benchEnv{impls: []benchImpl{
					{name: "gfsession", open: func(b *testing.B) (gsession.Storage, func()) {
						s := gfsession.NewStorageMemory()
						return s, func() { _ = s.Close(context.Background()) }
					}},
					{name: "gf", open: func(b *testing.B) (gsession.Storage, func()) {
						s := gsession.NewStorageMemory()
						return s, func() { closeGfStorageMemory(s) }
					}},
				}}
			},
		})
	}
}

// closeGfStorageMemory stops the gcache behind gf's StorageMemory, which gf
// gives no way to reach: its timer would keep a million sessions alive for
// the rest of the run and weigh on the rows measured after it.
func closeGfStorageMemory(s *gsession.StorageMemory) {
	f := reflect.ValueOf(s).Elem().FieldByName("cache")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return
	}
	c := (*gcache.Cache)(unsafe.Pointer(f.Pointer()))
	_ = c.Close(context.Background())
}

// BenchmarkManagerFloor runs the lifecycle of BenchmarkLifecycle on a
// storage that does nothing: GetSession hands out one shared map, writes
// are dropped. What it measures is gsession.Manager/Session's own cost
// (gvar per Get, ErrorDisabled round trips through StorageBase), which every
// storage pays on top of its own: the floor under the memory rows.
func BenchmarkManagerFloor(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			data := gmap.NewStrAnyMapFrom(sessionData(0, size.keys), true)
			m := gsession.New(benchTTL, &floorStorage{data: data})
			op := newBenchOp(size.keys)
			for _, mode := range []string{"rw", "ro"} {
				write := mode == "rw"
				b.Run(mode, func(b *testing.B) {
					b.Run("serial", func(b *testing.B) {
						ctx := context.Background()
						b.ReportAllocs()
						for i := 0; i < b.N; i++ {
							op.run(ctx, m, "floor", write, i)
						}
					})
				})
			}
		})
	}
}

// floorStorage is the do-nothing storage of BenchmarkManagerFloor.
type floorStorage struct {
	gsession.StorageBase
	data *gmap.StrAnyMap
}

func (s *floorStorage) GetSession(context.Context, string, time.Duration) (*gmap.StrAnyMap, error) {
	return s.data, nil
}

func (*floorStorage) SetSession(context.Context, string, *gmap.StrAnyMap, time.Duration) error {
	return nil
}

func (*floorStorage) UpdateTTL(context.Context, string, time.Duration) error { return nil }
