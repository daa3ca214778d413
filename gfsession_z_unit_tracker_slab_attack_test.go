package gfsession

// Attacks on the slab allocator of the load tracker (tracker.go: handOut,
// newSlab, slabLoad, untrackSlab, the intrusive id lists): each test tries to
// make the tracker forget a load still in use, confuse two maps, keep what is
// no longer in use, or corrupt its lists, and checks the contract of
// docs/design.md ("The write path") through it.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type slabAttackKey struct{}

// slabAttackCtx returns the context of one request, told apart from every
// other by ctxKey (a pointer).
func slabAttackCtx(name string) context.Context {
	return context.WithValue(context.Background(), slabAttackKey{}, name)
}

// slabAttackIdIn returns a new session id whose maps handOut takes from
// allocator `a`.
func slabAttackIdIn(a int) string {
	for {
		id := NewSessionId()
		if shardIndex(id)&(slabAllocators-1) == a {
			return id
		}
	}
}

// slabAttackBase is the address of the slab `m` would be in.
func slabAttackBase(m *gmap.StrAnyMap) uintptr {
	return uintptr(unsafe.Pointer(m)) &^ (slabBytes - 1)
}

// slabAttackRegistered reports whether a slab is registered at `base`
// (a live one, or a collected one whose cleanup has not run yet).
func slabAttackRegistered(tr *loadTracker, base uintptr) bool {
	sh := &tr.slabs[fibonacci(base)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.m[base]
	return ok
}

// slabAttackCount counts the listed loads for which `f` holds.
func slabAttackCount(tr *loadTracker, f func(e *load) bool) int {
	n := 0
	for i := range tr.ids {
		sh := &tr.ids[i]
		sh.mu.Lock()
		for e := sh.loads; e != nil; e = e.next {
			if f(e) {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

func slabAttackCountId(tr *loadTracker, id string) int {
	return slabAttackCount(tr, func(e *load) bool { return e.id == id })
}

// slabAttackCheckLists checks every id list: linked both ways, every load
// listed in the shard of its id, no cycle.
func slabAttackCheckLists(t *testing.T, tr *loadTracker) {
	t.Helper()
	for i := range tr.ids {
		sh := &tr.ids[i]
		sh.mu.Lock()
		var prev *load
		n := 0
		var bad string
		for e := sh.loads; e != nil; e = e.next {
			switch {
			case e.prev != prev:
				bad = "a load's prev is not the load before it"
			case !e.listed:
				bad = "a load in a list is not marked listed"
			case e.id == "":
				bad = "a load without an id is listed"
			case tr.idShard(e.id) != sh:
				bad = fmt.Sprintf("load of %q listed in the wrong shard", e.id)
			}
			if n++; n > 1<<24 {
				bad = "a cycle"
			}
			if bad != "" {
				break
			}
			prev = e
		}
		sh.mu.Unlock()
		require.Empty(t, bad, "id shard %d", i)
	}
}

// slabAttackPushOn makes every allocator start a new slab, so that no slab
// handed out from before is kept by an allocator as the one being filled.
func slabAttackPushOn(tr *loadTracker) {
	for a := 0; a < slabAllocators; a++ {
		id := slabAttackIdIn(a)
		for i := 0; i < int(slabMaps); i++ {
			tr.handOut(map[string]any{"push": i}, loaded{id: id})
		}
	}
}

// slabAttackChurn hands out `n` maps over many ids, as short requests do,
// writes some under another id, removes some, and drops them all.
func slabAttackChurn(tr *loadTracker, n, gcEvery int, tag string) {
	ctx := slabAttackCtx("churn")
	for i := 0; i < n; i++ {
		id := tag + strconv.Itoa(i%997)
		m := tr.handOut(map[string]any{"n": i}, loaded{id: id, base: map[string]any{"n": i}})
		switch i % 5 {
		case 0: // RegenerateId
			r := tr.resolve(ctx, m, id+"~")
			tr.retrack(r.ref, loaded{id: id + "~", base: map[string]any{"n": i}})
		case 1: // a logout
			tr.removed(ctx, id)
		case 2: // a write back
			r := tr.resolve(ctx, m, id)
			tr.retrack(r.ref, loaded{id: id, base: map[string]any{"n": i + 1}})
		}
		runtime.KeepAlive(m) // the caller of a write holds its map (see retrack)
		if gcEvery > 0 && i%gcEvery == gcEvery-1 {
			runtime.GC()
		}
	}
}

func gcEventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, func() bool {
		runtime.GC()
		return cond()
	}, 8*time.Second, 5*time.Millisecond, append([]any{msg}, args...)...)
}

// A map in use, in the same id list as thousands of loads that come and go
// (whose slabs die around it), is still a load of its session, still takes
// the marks of RemoveAll, and what is left once the churn is collected is
// bounded.
func TestSlabAttack_LiveMapSurvivesChurn(t *testing.T) {
	var tr loadTracker
	reqA, reqB := slabAttackCtx("a"), slabAttackCtx("b")
	id := NewSessionId()
	created := time.UnixMilli(1_700_000_000_000)
	inUse := tr.handOut(map[string]any{"user": "alice"}, loaded{id: id, created: created, user: "alice", base: map[string]any{"user": "alice"}})
	require.NotNil(t, tr.slabLoad(inUse), "handed out from a slab")
	for round := 0; round < 8; round++ {
		for i := 0; i < 2500; i++ {
			// Loads of the same session (its list is walked, unlinked around
			// the load in use) and of others.
			cid := id
			if i%3 != 0 {
				cid = "other" + strconv.Itoa(i%101)
			}
			m := tr.handOut(map[string]any{"n": i}, loaded{id: cid, base: map[string]any{"n": i}})
			if i%50 == 0 {
				require.Equal(t, loadSame, tr.resolve(reqA, m, cid).kind)
			}
		}
		runtime.GC()
		r := tr.resolve(reqA, inUse, id)
		require.Equal(t, loadSame, r.kind, "round %d: a map in use is never forgotten", round)
		require.Equal(t, map[string]any{"user": "alice"}, r.base)
		require.Equal(t, created, r.keptCreated())
		require.Equal(t, "alice", r.fromUser())
		if round == 3 {
			// A logout elsewhere: the slow request's write is dropped.
			tr.removed(reqB, id)
			assert.Equal(t, loadSame, tr.resolve(reqA, inUse, id).kind, "not A's RemoveAll")
			assert.Equal(t, loadRemoved, tr.resolve(reqB, inUse, id).kind, "B's")
		}
	}
	// A's own RemoveAll, after all that churn, reaches the map in use.
	tr.removed(reqA, id)
	r := tr.resolve(reqA, inUse, id)
	require.Equal(t, loadRemoved, r.kind)
	assert.Equal(t, "alice", r.fromUser(), "the user entry of the session as loaded moves")
	assert.Nil(t, r.sameBase())
	slabAttackCheckLists(t, &tr)

	bound := (1 + slabAllocators) * int(slabMaps)
	gcEventually(t, func() bool { return tr.size() <= bound }, "at most %d loads left", bound)
	assert.GreaterOrEqual(t, slabAttackCountId(&tr, id), 1, "the load in use is listed")
	runtime.KeepAlive(inUse)
}

// The other 20 maps of a slab die while one lives: the survivor keeps the
// slab and its own load, the dead maps' loads are neither lost nor listed
// twice, and once the survivor goes, the whole slab goes.
func TestSlabAttack_LoneSurvivorKeepsItsSlab(t *testing.T) {
	var tr loadTracker
	reqA, reqB := slabAttackCtx("a"), slabAttackCtx("b")
	const a, lone = 5, 13
	ids := make([]string, slabMaps)
	ms := make([]*gmap.StrAnyMap, slabMaps)
	for i := range ms {
		ids[i] = slabAttackIdIn(a)
		ms[i] = tr.handOut(map[string]any{"i": i}, loaded{id: ids[i], base: map[string]any{"i": i}})
	}
	if tr.slabLoad(ms[0]) == nil {
		t.Skip("the allocator did not align the slab: the maps are tracked by weak pointer")
	}
	base := slabAttackBase(ms[0])
	for i, m := range ms {
		require.Equal(t, base, slabAttackBase(m), "map %d in the first slab", i)
		require.Equal(t, uintptr(unsafe.Pointer(m))-base, uintptr(i)*unsafe.Sizeof(gmap.StrAnyMap{}))
		require.NotNil(t, tr.slabLoad(m))
	}
	survivor, survivorId := ms[lone], ids[lone]
	clear(ms)
	ms = nil
	tr.handOut(nil, loaded{id: slabAttackIdIn(a)}) // the allocator leaves the slab behind

	for round := 0; round < 6; round++ {
		slabAttackChurn(&tr, 3000, 0, "churn")
		runtime.GC()
		runtime.GC()
		require.True(t, slabAttackRegistered(&tr, base), "round %d: the survivor's slab is registered", round)
		r := tr.resolve(reqA, survivor, survivorId)
		require.Equal(t, loadSame, r.kind, "round %d", round)
		require.Equal(t, map[string]any{"i": lone}, r.base)
		for i, m := range []*gmap.StrAnyMap{gmap.NewStrAnyMap(true), {}} {
			require.Nil(t, tr.slabLoad(m), "a foreign map %d", i)
		}
	}
	for i, id := range ids {
		assert.LessOrEqual(t, slabAttackCountId(&tr, id), 1, "slot %d listed once at most", i)
	}
	tr.removed(reqB, survivorId)
	assert.Equal(t, loadRemoved, tr.resolve(reqB, survivor, survivorId).kind)
	assert.Equal(t, loadSame, tr.resolve(reqA, survivor, survivorId).kind)
	slabAttackCheckLists(t, &tr)
	runtime.KeepAlive(survivor)

	// The survivor goes: so do the slab and all 21 loads.
	gcEventually(t, func() bool {
		n := 0
		for _, id := range ids {
			n += slabAttackCountId(&tr, id)
		}
		return n == 0 && !slabAttackRegistered(&tr, base)
	}, "the slab and its loads are dropped once its last map is collected")
}

// A map handed out under one id and written under another (RegenerateId),
// then a write that is lost, then its slab dies: it is found under the new
// id only, RemoveAll marks follow it, and once collected nothing of it stays
// listed under either id.
func TestSlabAttack_RegenerateIdThenSlabDies(t *testing.T) {
	logTo(t) // the dropped writes' lines
	var tr loadTracker
	reqA, reqB := slabAttackCtx("a"), slabAttackCtx("b")
	created := time.UnixMilli(1_700_000_000_000)
	old, neu := NewSessionId(), NewSessionId()
	old2, neu2 := NewSessionId(), NewSessionId()
	func() {
		m := tr.handOut(map[string]any{"k": 1, "uid": "ann"}, loaded{id: old, created: created, user: "ann", base: map[string]any{"k": 1, "uid": "ann"}})
		require.NotNil(t, tr.slabLoad(m))
		r := tr.resolve(reqA, m, neu)
		require.Equal(t, loadCarried, r.kind)
		require.Equal(t, old, r.id)
		require.Equal(t, created, r.keptCreated(), "a new id never extends the lifetime")
		tr.retrack(r.ref, loaded{id: neu, created: created, user: "ann", base: map[string]any{"k": 1, "uid": "ann"}})
		assert.Equal(t, 0, slabAttackCountId(&tr, old), "moved out of the old id's list")
		assert.Equal(t, 1, slabAttackCountId(&tr, neu), "into the new id's")
		tr.removed(reqA, old) // gf's RegenerateId(true) deletes the old id with the request's context
		require.Equal(t, loadSame, tr.resolve(reqA, m, neu).kind, "the RemoveAll of the old id does not touch the new one")

		slabAttackChurn(&tr, 8000, 2000, "churn")
		r = tr.resolve(reqA, m, neu)
		require.Equal(t, loadSame, r.kind, "after churn")
		require.Equal(t, created, r.keptCreated())
		require.Equal(t, loadCarried, tr.resolve(reqA, m, old).kind, "written to the old id again: carried from the new one")

		tr.removed(reqB, neu)
		assert.Equal(t, loadSame, tr.resolve(reqA, m, neu).kind, "a logout elsewhere: dropped by the storage")
		assert.Equal(t, loadRemoved, tr.resolve(reqB, m, neu).kind)
		tr.removed(reqA, neu)
		assert.Equal(t, loadRemoved, tr.resolve(reqA, m, neu).kind)
		assert.Equal(t, loadFresh, tr.resolve(reqA, m, old).kind, "after its own RemoveAll, under another id: nothing carried")

		// A carried write of a session deleted meanwhile: lost under the new
		// id, through gf's RemoveAll of the old id and any churn.
		m2 := tr.handOut(map[string]any{"k": 2}, loaded{id: old2, created: created, base: map[string]any{"k": 2}})
		r = tr.resolve(reqA, m2, neu2)
		ok, err := tr.mayWrite(reqA, "test", &r, neu2, func(context.Context, *loaded) (bool, error) { return false, nil })
		require.NoError(t, err)
		require.False(t, ok)
		tr.removed(reqA, old2)
		slabAttackChurn(&tr, 8000, 2000, "churn2")
		require.Equal(t, loadLost, tr.resolve(reqA, m2, neu2).kind, "stays lost")
		tr.removed(reqA, neu2)
		require.Equal(t, loadRemoved, tr.resolve(reqA, m2, neu2).kind, "unless the request starts anew with RemoveAll")
		slabAttackCheckLists(t, &tr)
		runtime.KeepAlive(m)
		runtime.KeepAlive(m2)
	}()
	slabAttackPushOn(&tr)
	gcEventually(t, func() bool {
		return slabAttackCountId(&tr, old)+slabAttackCountId(&tr, neu)+slabAttackCountId(&tr, old2)+slabAttackCountId(&tr, neu2) == 0
	}, "nothing of a collected map stays listed, under its old id or its new one")
	slabAttackCheckLists(t, &tr)
}

// Many requests at once hand out, resolve, write under other ids, lose and
// remove, with the collector running all the time: every request sees what
// it did and nothing else, maps kept across collections are still known,
// the lists stay whole, and what is left is bounded.
func TestSlabAttack_ConcurrentHammer(t *testing.T) {
	logTo(t) // the dropped writes' lines
	var tr loadTracker
	const workers = 8
	iters := 4000
	if testing.Short() {
		iters = 300
	}
	shared := make([]string, 16)
	for i := range shared {
		shared[i] = NewSessionId()
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	var gcs atomic.Int64
	bg.Add(2)
	go func() { // the collector, all the time
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.GC()
			gcs.Add(1)
		}
	}()
	go func() { // logouts of shared sessions, and of sessions nobody has
		defer bg.Done()
		ctxR := slabAttackCtx("remover")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tr.removed(ctxR, shared[i%len(shared)])
			tr.removed(ctxR, "nobody"+strconv.Itoa(i))
			if i%64 == 0 {
				runtime.Gosched()
			}
		}
	}()

	type kept struct {
		m    *gmap.StrAnyMap
		id   string // the id it is written to
		n    int
		mine loadKind // what it is to its own request
	}
	var wg sync.WaitGroup
	finals := make([][]kept, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctxW := slabAttackCtx("w" + strconv.Itoa(g))
			other := slabAttackCtx("o" + strconv.Itoa(g))
			ring := make([]kept, 48)
			fail := func(format string, args ...any) bool {
				t.Errorf("worker %d: "+format, append([]any{g}, args...)...)
				return false
			}
			check := func(want, got loadKind, what string, i int) bool {
				if want != got {
					return fail("iteration %d: %s: kind %d, want %d", i, what, got, want)
				}
				return true
			}
			for i := 0; i < iters; i++ {
				id := fmt.Sprintf("w%d-%d", g, i)
				m := tr.handOut(map[string]any{"n": i}, loaded{id: id, user: id, base: map[string]any{"n": i}})
				r := tr.resolve(ctxW, m, id)
				if !check(loadSame, r.kind, "loaded", i) || r.base["n"] != i || r.user != id {
					fail("iteration %d: loaded as %+v", i, r.loaded)
					return
				}
				k := kept{m: m, id: id, n: i, mine: loadSame}
				ok := true
				switch i % 4 {
				case 0: // RemoveAll, then maybe Set
					tr.removed(ctxW, id)
					ok = check(loadRemoved, tr.resolve(ctxW, m, id).kind, "own RemoveAll", i) &&
						check(loadSame, tr.resolve(other, m, id).kind, "another request's view", i)
					k.mine = loadRemoved
					if i%8 == 0 {
						r := tr.resolve(ctxW, m, id)
						tr.retrack(r.ref, loaded{id: id, base: map[string]any{"n": i}})
						k.mine = loadSame
					}
				case 1: // RegenerateId(true)
					nid := id + "-new"
					r := tr.resolve(ctxW, m, nid)
					ok = check(loadCarried, r.kind, "carried", i) && r.id == id
					tr.retrack(r.ref, loaded{id: nid, user: id, base: map[string]any{"n": i}})
					tr.removed(ctxW, id)
					ok = ok && check(loadSame, tr.resolve(ctxW, m, nid).kind, "after RegenerateId", i)
					k.id = nid
				case 2: // a session everybody uses
					sid := shared[i%len(shared)]
					m2 := tr.handOut(map[string]any{"s": i}, loaded{id: sid})
					tr.removed(ctxW, sid)
					kind := tr.resolve(ctxW, m2, sid).kind
					if kind != loadRemoved && kind != loadSame {
						ok = fail("iteration %d: shared session: kind %d", i, kind)
					}
					runtime.KeepAlive(m2)
				case 3: // RegenerateId of a session deleted meanwhile
					nid := id + "-lost"
					r := tr.resolve(ctxW, m, nid)
					w, _ := tr.mayWrite(ctxW, "test", &r, nid, func(context.Context, *loaded) (bool, error) { return false, nil })
					if w {
						ok = fail("iteration %d: a lost write went on", i)
					}
					tr.removed(ctxW, id)
					ok = ok && check(loadLost, tr.resolve(ctxW, m, nid).kind, "lost", i)
					k.id, k.mine = nid, loadLost
				}
				runtime.KeepAlive(m)
				if !ok {
					return
				}
				if i%3 == 0 {
					ring[(i/3)%len(ring)] = k
				}
				// A map kept across many collections: still known as it was.
				if o := ring[(i*7)%len(ring)]; o.m != nil {
					r := tr.resolve(ctxW, o.m, o.id)
					if !check(o.mine, r.kind, "kept map "+o.id, i) {
						return
					}
					if o.mine == loadSame && r.base["n"] != o.n {
						fail("iteration %d: kept map %s: base %v, want n=%d", i, o.id, r.base, o.n)
						return
					}
				}
			}
			finals[g] = ring
		}(g)
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	t.Logf("%d collections during the run", gcs.Load())
	if t.Failed() {
		return
	}
	slabAttackCheckLists(t, &tr)
	// Another request's RemoveAll reaches every kept map.
	other := slabAttackCtx("late")
	for g, ring := range finals {
		ctxW := slabAttackCtx("w" + strconv.Itoa(g)) // another pointer: not the worker's request
		for _, o := range ring {
			if o.m == nil {
				continue
			}
			tr.removed(other, o.id)
			require.Equal(t, loadRemoved, tr.resolve(other, o.m, o.id).kind, o.id)
			want := loadSame
			if o.mine == loadLost {
				want = loadLost
			}
			require.Equal(t, want, tr.resolve(ctxW, o.m, o.id).kind, o.id)
		}
	}
	finals = nil
	bound := slabAllocators * int(slabMaps)
	gcEventually(t, func() bool { return tr.size() <= bound }, "at most %d loads left after the run", bound)
	slabAttackCheckLists(t, &tr)
}

// slabAttackFake is laid out as a slab is, and is of its size class: it
// lands where dead slabs were. Its maps are no slab's maps.
type slabAttackFake struct {
	maps  [slabMaps]gmap.StrAnyMap
	loads *[slabMaps]load
}

// Maps that are not a slab's are never taken for one: plain gmaps, maps
// inside an object laid out exactly like a slab in the very memory of slabs
// just collected (their cleanup perhaps not run yet), a map in a slab of
// another tracker.
func TestSlabAttack_ForeignMapsNeverTaken(t *testing.T) {
	var tr loadTracker
	ctx := slabAttackCtx("a")
	require.Equal(t, uintptr(slabBytes), unsafe.Sizeof(slabAttackFake{}), "the fake is of the slabs' size class")
	stale, aligned := 0, 0
	for round := 0; round < 30; round++ {
		for i := 0; i < 4*slabAllocators*int(slabMaps); i++ {
			tr.handOut(map[string]any{"n": i}, loaded{id: "victim", base: map[string]any{"n": i}})
		}
		runtime.GC()
		fakes := make([]*slabAttackFake, 96)
		for j := range fakes {
			f := &slabAttackFake{loads: new([slabMaps]load)}
			for k := range f.loads {
				f.loads[k].loaded = loaded{id: "victim", base: map[string]any{"fake": k}}
			}
			fakes[j] = f
			if b := uintptr(unsafe.Pointer(f)); b&(slabBytes-1) == 0 {
				aligned++
				if slabAttackRegistered(&tr, b) {
					stale++
				}
			}
		}
		tr.removed(ctx, "victim")
		for j, f := range fakes {
			for k := range f.maps {
				m := &f.maps[k]
				require.Nil(t, tr.slabLoad(m), "round %d fake %d map %d", round, j, k)
				require.Equal(t, loadFresh, tr.resolve(ctx, m, "victim").kind, "round %d fake %d map %d", round, j, k)
			}
		}
		for j := 0; j < 64; j++ {
			m := gmap.NewStrAnyMap(true)
			require.Nil(t, tr.slabLoad(m))
			require.Equal(t, loadFresh, tr.resolve(ctx, m, "victim").kind)
		}
		// A foreign map written once is tracked by itself, its neighbours not.
		f := fakes[round%len(fakes)]
		r := tr.resolve(ctx, &f.maps[3], "written")
		tr.retrack(r.ref, loaded{id: "written", base: map[string]any{"w": round}})
		r = tr.resolve(ctx, &f.maps[3], "written")
		require.Equal(t, loadSame, r.kind)
		require.Equal(t, map[string]any{"w": round}, r.base)
		require.Equal(t, loadFresh, tr.resolve(ctx, &f.maps[2], "written").kind)
		require.Equal(t, loadFresh, tr.resolve(ctx, &f.maps[4], "written").kind)
		runtime.KeepAlive(fakes)
	}
	t.Logf("%d fakes 512-aligned, %d of them at the address of a dead slab still registered", aligned, stale)
	slabAttackCheckLists(t, &tr)
}

// A map handed out by one storage's tracker and written to another storage
// (a migration, two managers): a fresh session there, tracked there by weak
// pointer, its neighbours in the slab not confused with it, and dropped
// there when its slab dies.
func TestSlabAttack_OtherTrackersSlabMap(t *testing.T) {
	var a, b loadTracker
	ctx, other := slabAttackCtx("a"), slabAttackCtx("b")
	id := NewSessionId()
	func() {
		m := a.handOut(map[string]any{"k": 1}, loaded{id: id, base: map[string]any{"k": 1}})
		neighbour := a.handOut(map[string]any{"k": 2}, loaded{id: id, base: map[string]any{"k": 2}})
		require.NotNil(t, a.slabLoad(m))
		require.Equal(t, slabAttackBase(m), slabAttackBase(neighbour), "one slab")
		require.Nil(t, b.slabLoad(m), "not b's slab")
		require.Equal(t, loadFresh, b.resolve(ctx, m, id).kind, "b never loaded it")
		r := b.resolve(ctx, m, id)
		b.retrack(r.ref, loaded{id: id, base: map[string]any{"k": 10}})
		r = b.resolve(ctx, m, id)
		require.Equal(t, loadSame, r.kind)
		require.Equal(t, map[string]any{"k": 10}, r.base)
		require.Equal(t, loadFresh, b.resolve(ctx, neighbour, id).kind, "its neighbour is another map")
		b.removed(other, id)
		assert.Equal(t, loadRemoved, b.resolve(other, m, id).kind)
		r = a.resolve(other, m, id)
		assert.Equal(t, loadSame, r.kind, "a saw no RemoveAll")
		assert.Equal(t, map[string]any{"k": 1}, r.base, "nor b's write")
		runtime.KeepAlive(m)
		runtime.KeepAlive(neighbour)
	}()
	slabAttackPushOn(&a)
	gcEventually(t, func() bool { return b.size() == 0 && slabAttackCountId(&a, id) == 0 },
		"both trackers drop the map's loads once its slab is collected")
}

// The slab address of a collected slab is taken by a new one: whatever order
// the old slab's cleanup and the new slab's registration come in, the old
// loads go, the new slab stays registered and its maps resolve.
func TestSlabAttack_AddressReuse(t *testing.T) {
	var tr loadTracker
	ctx := slabAttackCtx("a")
	reused, pending := 0, 0
	for attempt := 0; attempt < 150 && reused < 40; attempt++ {
		oldId := "old" + strconv.Itoa(attempt)
		var base uintptr
		func() {
			first := tr.handOut(map[string]any{"o": 0}, loaded{id: oldId})
			base = slabAttackBase(first)
			for i := 0; i < int(slabMaps); i++ {
				tr.handOut(map[string]any{"o": i}, loaded{id: oldId})
			}
		}()
		slabAttackPushOn(&tr) // no slab holding oldId's loads is being filled
		runtime.GC()          // the old slab is unreachable; its cleanup may not have run yet
		wasRegistered := slabAttackRegistered(&tr, base)
		var kept []*gmap.StrAnyMap
		hit := -1
		for i := 0; i < 30*int(slabMaps) && hit < 0; i++ {
			m := tr.handOut(map[string]any{"i": i}, loaded{id: "new" + strconv.Itoa(i), base: map[string]any{"i": i}})
			kept = append(kept, m)
			if slabAttackBase(m) == base && tr.slabLoad(m) != nil {
				hit = i
			}
		}
		if hit < 0 {
			continue
		}
		reused++
		if wasRegistered {
			pending++
		}
		gcEventually(t, func() bool { return slabAttackCountId(&tr, oldId) == 0 }, "the old slab's loads are dropped")
		require.True(t, slabAttackRegistered(&tr, base), "the new slab at the address stays registered")
		for i, m := range kept {
			r := tr.resolve(ctx, m, "new"+strconv.Itoa(i))
			require.Equal(t, loadSame, r.kind, "attempt %d map %d", attempt, i)
			require.Equal(t, map[string]any{"i": i}, r.base)
		}
		runtime.KeepAlive(kept)
	}
	t.Logf("a new slab took a collected slab's address %d times, %d of them with the old one still registered", reused, pending)
	slabAttackCheckLists(t, &tr)
}

// Churn of every kind, nothing held: the tracker comes back to the slabs
// being filled, and the values loaded (`base`) are released.
func TestSlabAttack_SizeBoundedAfterChurn(t *testing.T) {
	var tr loadTracker
	ctx := slabAttackCtx("a")
	type blob struct{ b [1 << 14]byte }
	var weaks []weak.Pointer[blob]
	for round := 0; round < 16; round++ {
		for i := 0; i < 2000; i++ {
			id := fmt.Sprintf("r%d-%d", round, i%300)
			var base map[string]any
			if i%100 == 0 {
				b := new(blob)
				weaks = append(weaks, weak.Make(b))
				base = map[string]any{"blob": b}
			}
			m := tr.handOut(map[string]any{"i": i}, loaded{id: id, base: base})
			switch {
			case i%3 == 0:
				r := tr.resolve(ctx, m, id+"-new")
				tr.retrack(r.ref, loaded{id: id + "-new", base: base})
			case i%5 == 0:
				tr.removed(ctx, id)
			case i%7 == 0:
				r := tr.resolve(ctx, m, id+"-lost")
				tr.lose(r.ref, id+"-lost")
			}
			runtime.KeepAlive(m)
		}
		if round%4 == 0 {
			runtime.GC()
		}
	}
	slabAttackCheckLists(t, &tr)
	slabAttackPushOn(&tr)
	bound := slabAllocators * int(slabMaps)
	gcEventually(t, func() bool {
		for _, w := range weaks {
			if w.Value() != nil {
				return false
			}
		}
		return tr.size() <= bound && slabAttackCount(&tr, func(e *load) bool { return e.lost }) == 0
	}, "at most %d loads left (the slabs being filled), every base released", bound)
	slabAttackCheckLists(t, &tr)
}

// slabAttackMemorySessions stores `n` sessions in `s` for churn.
func slabAttackMemorySessions(t *testing.T, s *StorageMemory, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NewSessionId()
		require.NoError(t, s.SetSession(slabAttackCtx("seed"), ids[i], gmap.NewStrAnyMapFrom(map[string]any{"n": i}, true), time.Hour))
	}
	return ids
}

// slabAttackMemoryChurn loads the sessions `ids`, `n` times in all, as
// short read-only requests do, with a collection every `gcEvery` loads.
func slabAttackMemoryChurn(t *testing.T, s *StorageMemory, ids []string, n, gcEvery int) {
	ctx := slabAttackCtx("churn")
	for i := 0; i < n; i++ {
		m, err := s.GetSession(ctx, ids[i%len(ids)], time.Hour)
		if err != nil || m == nil {
			require.NoError(t, err)
			require.NotNil(t, m, "session %d", i%len(ids))
		}
		if i%gcEvery == gcEvery-1 {
			runtime.GC()
		}
	}
	runtime.GC()
}

// A slow request removes a key; 50,000 other loads and their collection go
// by; its write still removes the key (a forgotten load would merge the map
// as new keys only and leave the key stored), and keeps a concurrent
// request's key.
func TestSlabAttack_MemoryRemoveAfterChurn(t *testing.T) {
	s := NewStorageMemory(MemoryConfig{CleanupInterval: -1})
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	mgr := gsession.New(time.Hour, s)
	id := NewSessionId()
	login := mgr.New(slabAttackCtx("login"), id)
	require.NoError(t, login.Set("a", 1))
	require.NoError(t, login.Set("b", 2))
	require.NoError(t, login.Set("c", 3))
	require.NoError(t, login.Close())
	others := slabAttackMemorySessions(t, s, 64)

	slow := mgr.New(slabAttackCtx("slow"), id)
	require.NoError(t, slow.Remove("b"))
	concurrent := mgr.New(slabAttackCtx("concurrent"), id)
	require.NoError(t, concurrent.Set("d", 4))
	require.NoError(t, concurrent.Close())

	slabAttackMemoryChurn(t, s, append(others, id), 50000, 5000)
	require.NoError(t, slow.Close())

	data, err := mgr.New(slabAttackCtx("check"), id).Data()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": 1, "c": 3, "d": 4}, data, "the slow request's Remove applied, the concurrent key kept")

	// And once more: the same Session, changed and closed again, writes a
	// delta from its first write.
	require.NoError(t, slow.Remove("c"))
	slabAttackMemoryChurn(t, s, others, 20000, 5000)
	require.NoError(t, slow.Close())
	data, err = mgr.New(slabAttackCtx("check2"), id).Data()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": 1, "d": 4}, data)
}

// A logout elsewhere during a slow request, with slabs churning in between:
// the session stays deleted after the slow request writes (twice), also
// through a RegenerateId; the slow request's own logout followed by a
// message starts a new session holding the message only.
func TestSlabAttack_MemoryLogoutDuringSlowRequest(t *testing.T) {
	logs := logTo(t)
	s := NewStorageMemory(MemoryConfig{CleanupInterval: -1, UserKey: "uid"})
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	mgr := gsession.New(time.Hour, s)
	others := slabAttackMemorySessions(t, s, 64)
	churn := func() { slabAttackMemoryChurn(t, s, others, 15000, 3000) }
	loginAs := func(user string) string {
		id := NewSessionId()
		sess := mgr.New(slabAttackCtx("login"), id)
		require.NoError(t, sess.Set("uid", user))
		require.NoError(t, sess.Set("k", 1))
		require.NoError(t, sess.Close())
		return id
	}
	stored := func(id string) map[string]any {
		m, err := s.GetSession(slabAttackCtx("check"), id, time.Hour)
		require.NoError(t, err)
		if m == nil {
			return nil
		}
		return m.Map()
	}

	t.Run("logout elsewhere", func(t *testing.T) {
		id := loginAs("ann")
		slow := mgr.New(slabAttackCtx("slow"), id)
		v, err := slow.Get("k")
		require.NoError(t, err)
		require.Equal(t, 1, v.Int())
		churn()
		logout := mgr.New(slabAttackCtx("logout"), id)
		require.NoError(t, logout.RemoveAll())
		require.NoError(t, logout.Close())
		churn()
		require.NoError(t, slow.Set("k", 2))
		require.NoError(t, slow.Close())
		assert.Nil(t, stored(id), "a deleted session stays deleted")
		churn()
		require.NoError(t, slow.Set("k", 3))
		require.NoError(t, slow.Close())
		assert.Nil(t, stored(id), "also after the Session is closed again")
		list, err := s.Sessions(context.Background(), "ann")
		require.NoError(t, err)
		assert.Empty(t, list)
		assert.Contains(t, logs.String(), "was deleted while a request that had loaded it ran")
	})

	t.Run("own logout, then a message", func(t *testing.T) {
		id := loginAs("bob")
		slow := mgr.New(slabAttackCtx("slow"), id)
		_, err := slow.Get("k")
		require.NoError(t, err)
		churn()
		require.NoError(t, slow.RemoveAll())
		churn()
		require.NoError(t, slow.Set("msg", "bye"))
		require.NoError(t, slow.Close())
		assert.Equal(t, map[string]any{"msg": "bye"}, stored(id), "a new session, holding the message only")
		list, err := s.Sessions(context.Background(), "bob")
		require.NoError(t, err)
		assert.Empty(t, list, "no longer bob's")
	})

	t.Run("RegenerateId of a session logged out elsewhere", func(t *testing.T) {
		id := loginAs("cyd")
		slow := mgr.New(slabAttackCtx("slow"), id)
		_, err := slow.Get("k")
		require.NoError(t, err)
		logout := mgr.New(slabAttackCtx("logout"), id)
		require.NoError(t, logout.RemoveAll())
		require.NoError(t, logout.Close())
		churn()
		newId, err := slow.RegenerateId(true)
		require.NoError(t, err)
		churn()
		require.NoError(t, slow.Set("k", 9))
		require.NoError(t, slow.Close())
		assert.Nil(t, stored(newId), "stays deleted under the new id")
		assert.Nil(t, stored(id))
		list, err := s.Sessions(context.Background(), "cyd")
		require.NoError(t, err)
		assert.Empty(t, list)
	})
}

// slabAttackDriver is a sessionDriver over a map of creation times, with a
// hook that runs inside put.
type slabAttackDriver struct {
	stored    map[string]time.Time
	beforePut func()
}

func (d *slabAttackDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	if d.beforePut != nil {
		d.beforePut()
	}
	if cur, ok := d.stored[w.id]; w.match == matchCreated && (!ok || !cur.Equal(w.loaded.created)) {
		return false, nil
	}
	d.stored[w.id] = w.created
	return true, nil
}

func (d *slabAttackDriver) remove(ctx context.Context, id string) error {
	delete(d.stored, id)
	return nil
}

func (d *slabAttackDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	cur, ok := d.stored[l.id]
	return ok && cur.Equal(l.created), nil
}

func (d *slabAttackDriver) indexUser(ctx context.Context, user, id string) error { return nil }

var errSlabAttackNotSlab = errors.New("the map was not handed out from an aligned slab")

// slabAttackFill hands out maps from allocator `a` until the slab being
// filled is left behind by it: the other maps of a request's slab, of
// requests already finished.
func slabAttackFill(tr *loadTracker, a int) {
	for i := 0; i < int(slabMaps); i++ {
		tr.handOut(map[string]any{"f": i}, loaded{id: slabAttackIdIn(a)})
	}
}

// slabAttackWaitCollected runs the collector until the slab at `base` has
// been collected and its cleanup has run, for at most 2 s.
func slabAttackWaitCollected(tr *loadTracker, base uintptr) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		if !slabAttackRegistered(tr, base) {
			return true
		}
		runtime.Gosched()
	}
	return false
}

// slabAttackLoadAndClose is a request that loads session `id`, changes it
// and writes it, as gf's Session.Close does for a caller that does not use
// the Session after Close: the map is used by nobody once the writer has
// read it.
//
//go:noinline
func slabAttackLoadAndClose(w *sessionWriter, id string, created time.Time, base *uintptr) error {
	m := w.loaded(id, created, map[string]any{"k": 1})
	if w.tracker.slabLoad(m) == nil {
		return errSlabAttackNotSlab
	}
	*base = slabAttackBase(m)
	slabAttackFill(w.tracker, shardIndex(id)&(slabAllocators-1))
	m.Set("k", 2)
	return w.setSession(slabAttackCtx("req"), id, m, time.Hour)
}

// A map handed out is written by a request that no longer holds it: the
// writer reads it, then the backend's put takes a while, long enough for
// the collector to collect the map's slab and run its cleanup. The load must
// not outlive its map. Before the slabs, retrack found the map dead through
// its weak pointer and stored nothing; with the slabs it lists the load
// again, in a slab whose cleanup has already run, where nothing ever unlists
// it: it is kept forever, `base` and the slab's other 20 loads with it.
func TestSlabAttack_WriterRetrackAfterSlabCollected(t *testing.T) {
	var tr loadTracker
	env, err := newEnvelope("", nil)
	require.NoError(t, err)
	d := &slabAttackDriver{stored: map[string]time.Time{}}
	w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d}
	id := NewSessionId()
	created := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	d.stored[id] = created
	var base uintptr
	collected := false
	d.beforePut = func() { collected = slabAttackWaitCollected(&tr, base) }
	err = slabAttackLoadAndClose(w, id, created, &base)
	if errors.Is(err, errSlabAttackNotSlab) {
		t.Skip(err)
	}
	require.NoError(t, err)
	require.True(t, d.stored[id].Equal(created), "written")
	// Whether or not the tracker let the slab go during the write (keeping
	// it until the write returns is fine), once the map is collected its
	// load must go.
	t.Logf("slab collected during the write: %v", collected)
	gcEventually(t, func() bool { return slabAttackCountId(&tr, id) == 0 },
		"the load of a collected map stays listed under %s forever: retrack listed it again in a slab already cleaned up", shortId(id))
}

// slabAttackFileRegenerate is a request that loads session `id` from `s`,
// a logout elsewhere deletes it, and the request writes its map under
// `newId`, not using the map after.
//
//go:noinline
func slabAttackFileRegenerate(s *StorageFile, id, newId string, base *uintptr) error {
	slow := slabAttackCtx("slow")
	m, err := s.GetSession(slow, id, time.Hour)
	if err != nil {
		return err
	}
	if m == nil {
		return errors.New("session not loaded")
	}
	if s.tracker.slabLoad(m) == nil {
		return errSlabAttackNotSlab
	}
	*base = slabAttackBase(m)
	slabAttackFill(&s.tracker, shardIndex(Handle(id))&(slabAllocators-1))
	if err := s.RemoveAll(slabAttackCtx("logout"), id); err != nil {
		return err
	}
	return s.SetSession(slow, newId, m, time.Hour)
}

// slabAttackHookWriter runs `hook` on the first log line holding `match`.
type slabAttackHookWriter struct {
	match string
	once  sync.Once
	hook  func()
}

func (w *slabAttackHookWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.match) {
		w.once.Do(w.hook)
	}
	return len(p), nil
}

// The same through the file storage's public methods: the carried write of
// a session deleted meanwhile marks the map lost (after logging the dropped
// write, while the collector may collect the slab of a map nobody holds): a
// collected map's load, lost, stays listed forever.
func TestSlabAttack_FileLostWriteAfterSlabCollected(t *testing.T) {
	s, err := NewStorageFile(FileConfig{Path: t.TempDir(), CleanupInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	id, newId := NewSessionId(), NewSessionId()
	require.NoError(t, s.SetSession(slabAttackCtx("login"), id, gmap.NewStrAnyMapFrom(map[string]any{"k": 1}, true), time.Hour))

	var base uintptr
	collected := false
	hw := &slabAttackHookWriter{match: "was deleted while", hook: func() { collected = slabAttackWaitCollected(&s.tracker, base) }}
	prev := g.Log().GetWriter()
	g.Log().SetWriter(hw)
	t.Cleanup(func() { g.Log().SetWriter(prev) })

	err = slabAttackFileRegenerate(s, id, newId, &base)
	g.Log().SetWriter(prev)
	if errors.Is(err, errSlabAttackNotSlab) {
		t.Skip(err)
	}
	require.NoError(t, err)
	m, err := s.GetSession(slabAttackCtx("check"), newId, time.Hour)
	require.NoError(t, err)
	require.Nil(t, m, "the write was dropped: the session stays deleted")
	t.Logf("slab collected during the write: %v", collected)
	gcEventually(t, func() bool {
		return slabAttackCount(&s.tracker, func(e *load) bool { return e.lost }) == 0
	}, "the lost load of a collected map stays listed forever")
}
