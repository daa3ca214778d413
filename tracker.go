package gfsession

import (
	"context"
	"reflect"
	"runtime"
	"sync"
	"time"
	"unsafe"
	"weak"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/frame/g"
)

const (
	trackerShardBits = 6
	trackerShards    = 1 << trackerShardBits
)

// loadTracker remembers, for each session map handed out by GetSession, which
// session it was loaded from and what that session was then: its creation
// time, its user and, for the storages that merge per key, its values. Every
// SetSession starts from it, through resolve: what the request's map is to
// the session it is written to (see loadKind) decides whether the write is
// conditional on the session loaded, which creation time it keeps, which
// user index entry it moves and, for memory and redis-hash, which keys it
// changed. docs/design.md ("The write path") states these rules as the
// contract; this file is where they are decided.
//
// A load is remembered for exactly as long as its map is reachable, and no
// longer: gf's Session holds the map for as long as the request can still
// write it (a Session may be closed, changed and closed again), the tracker
// holds it only through a weak pointer, and a cleanup attached to the map
// (runtime.AddCleanup) drops the load, `base` included, once the map has
// been collected. What the tracker holds is so bounded by the maps in use
// (in-flight requests), however many sessions come and go, and a load
// still in use is never forgotten.
//
// The tracker also remembers which request deleted a session with RemoveAll
// after loading it, in the load itself (see removed): the record lives as
// long as the request's map, so no number of other removals in between can
// make a request's write after its own RemoveAll look stale.
type loadTracker struct {
	maps  [trackerShards]mapShard  // the loads of maps made elsewhere, by map; the lock of every load
	ids   [trackerShards]idShard   // every load, by the session id it holds
	slabs [trackerShards]slabShard // the slabs of the maps handed out (see mapSlab), by address
	alloc [slabAllocators]slabAlloc
}

type mapShard struct {
	mu    sync.Mutex
	loads map[weak.Pointer[gmap.StrAnyMap]]*load // allocated on first use
}

// idShard lists the loads of the ids that hash to it, in one list: a
// RemoveAll walks it for the loads of its id (the loads in use, and those a
// slab keeps, spread over trackerShards lists), and a load costs no map of
// ids to keep.
type idShard struct {
	mu    sync.Mutex
	loads *load // the first; linked by load.prev and load.next
}

// A load costs nothing the collector must track for each map: the maps
// GetSession hands out are made by handOut inside slabs of slabMaps maps,
// and a load is a slot of its slab's loads. A map keeps its slab reachable
// (an interior pointer keeps the whole object), so a slab and its loads are
// collected once none of its maps is in use, and one weak pointer and one
// cleanup per slab (runtime specials, each costing about as much as a whole
// read-only request) do what one of each per map did. A slab is found from
// one of its maps by address: slabs are slabBytes long, a size the Go
// allocator aligns to itself, so a map's slab starts at its address rounded
// down (a slab that is not so aligned is not used: its maps are tracked as
// maps made elsewhere are). What is kept beyond the maps in use: the loads
// of at most slabMaps-1 finished requests per slab that one of its maps
// keeps reachable, and of the slabs being filled.
//
// Maps made elsewhere (gf's, for a new session; a caller's) are tracked
// from their first write by a weak pointer each, in mapShard.
const (
	slabBytes      = 512
	slabMaps       = (slabBytes - unsafe.Sizeof(uintptr(0))) / unsafe.Sizeof(gmap.StrAnyMap{})
	slabAllocators = 8
)

// mapSlab is slabMaps session maps and their loads.
type mapSlab struct {
	_     [slabBytes - slabMaps*unsafe.Sizeof(gmap.StrAnyMap{}) - unsafe.Sizeof(uintptr(0))]byte // first: a zero-size last field would add padding
	maps  [slabMaps]gmap.StrAnyMap
	loads *[slabMaps]load // not in the slab: the slab's cleanup must reach them
}

// The allocator aligns an object of a size class that divides its span to
// that size: slabBytes must be a size class, and mapSlab exactly that long.
// Up to 512 bytes, an object with pointers has no header before it (larger
// ones start 8 bytes into their slot).
var _ [slabBytes - unsafe.Sizeof(mapSlab{})]struct{}
var _ [unsafe.Sizeof(mapSlab{}) - slabBytes]struct{}

// slabShard finds slabs by address. The weak pointer tells a live slab
// from a collected one whose address a new slab may have taken.
type slabShard struct {
	mu sync.Mutex
	m  map[uintptr]weak.Pointer[mapSlab] // allocated on first use
}

// slabAlloc hands out the maps of one slab at a time.
type slabAlloc struct {
	mu   sync.Mutex
	cur  *mapSlab
	used uintptr
}

// load is one tracked map. Its fields are guarded by the mutex of the map's
// mapShard; `id` also by the idShard of the id, whose list holds the load,
// and `removedBy` by that idShard only. Lock order: mapShard, then idShard.
type load struct {
	m         weak.Pointer[gmap.StrAnyMap] // a map made elsewhere; zero in a slab
	prev      *load                        // in the idShard's list; guarded by that idShard
	next      *load
	listed    bool
	removedBy reqKey
	loaded
}

// loaded is a session as one request loaded (or last wrote) it.
type loaded struct {
	id string
	// created is the session's creation time; zero when the stored format
	// has none (gf's).
	created time.Time
	// user is the session's userKey value, "" for none.
	user string
	// base is the session's values, for the storages that merge per key
	// (memory, redis-hash); nil for the others. Never mutated.
	base map[string]any
	// existsOnly: whole-session storages, the map was written over a
	// session loaded in gf's format, which has no creation time: another
	// request that loaded it too may have stamped the session with its
	// own since, so the map's next writes check only that a session
	// exists under the id, as the first one did.
	existsOnly bool
	// entry: memory storage, the entry loaded or last written; nil after a
	// merge, when no stored entry holds exactly `base`.
	entry *memoryEntry
	// seal: redis-hash storage, what a write checks and keeps of the hash.
	seal hashSeal
	// lost: the map was carried over to `id` by RegenerateId from a session
	// deleted while the request ran (see mayWrite): nothing it holds may
	// be stored, under any id, unless the request itself starts a new
	// session with RemoveAll.
	lost bool
}

// loadKind is what a request's map is to the session it is written to.
type loadKind uint8

const (
	// loadFresh: the map was not loaded from the storage (a new session,
	// or a load the tracker never saw). The write makes a new session.
	loadFresh loadKind = iota
	// loadSame: the map was loaded from (or last written to) the session it
	// is written to. The write is conditional: a session deleted or
	// replaced since stays so, and the write is dropped and logged.
	loadSame
	// loadCarried: the map was loaded from another id and is written to a
	// new one (gf's RegenerateId). A new session, keeping the creation
	// time, and so the MaxLifetime, of the session it replaces.
	loadCarried
	// loadRemoved: the map was loaded from the session, which this same
	// request then deleted with RemoveAll (gf's Session.RemoveAll, then
	// Set). A new session under the id; the user index entry of the
	// session as loaded is there to move.
	loadRemoved
	// loadLost: the map was carried over from a session deleted while the
	// request ran (see loaded.lost). The write is dropped and logged.
	loadLost
)

// resolved is where a write of a map starts: what the map is to the session
// written (kind) and what it was loaded as (for loadCarried, the other
// session).
type resolved struct {
	kind loadKind
	loaded
	ref loadRef // for retrack
}

// resolve answers, for a write of `m` to session `id` by the request of
// `ctx`, what the request loaded: see loadKind for the rules.
func (t *loadTracker) resolve(ctx context.Context, m *gmap.StrAnyMap, id string) resolved {
	l, by, ref, found := t.lookup(m)
	r := resolved{loaded: l, ref: ref}
	switch {
	case !found:
		r.loaded = loaded{}
	case by.t != nil && by == ctxKey(ctx):
		// The request deleted what it loaded with RemoveAll: what it writes
		// now is a new session, under that id or, after RegenerateId (a
		// login that clears the session first, then rotates the id), under
		// another, with nothing carried over.
		r.kind = loadRemoved
		if l.id != id {
			r.kind, r.loaded = loadFresh, loaded{}
		}
	case l.lost:
		r.kind = loadLost
	case l.id != id:
		r.kind = loadCarried
	default:
		r.kind = loadSame
	}
	return r
}

// mayWrite reports whether a write of `r` to session `id` by a storage of
// type `backend` goes on, the rule for the two kinds that drop it:
//   - loadCarried: gf's RegenerateId writes the new id before it removes
//     the old one. A session deleted while the request ran (a logout
//     elsewhere, DestroyUser) is no longer there to carry over (`holds`
//     checks it; the check and the write are two steps), and stays deleted
//     under the new id too: the map is marked lost under `id`, so that
//     neither its next write nor the RemoveAll of the old id that
//     RegenerateId makes next brings it back.
//   - loadLost: dropped.
//
// A dropped write is logged.
func (t *loadTracker) mayWrite(ctx context.Context, backend string, r *resolved, id string, holds func(context.Context, *loaded) (bool, error)) (bool, error) {
	switch r.kind {
	case loadLost:
		logStaleWrite(ctx, backend, id)
		return false, nil
	case loadCarried:
		held, err := holds(ctx, &r.loaded)
		if err != nil || held {
			return held, err
		}
		logStaleWrite(ctx, backend, r.id)
		t.lose(r.ref, id)
		return false, nil
	}
	return true, nil
}

// lose marks the map of `ref` lost under `id` (see loaded.lost): its
// session was deleted, or ran out of MaxLifetime, while the request ran,
// and none of its further writes may store it again, even after the
// RemoveAll of its old id that gf's RegenerateId makes with the request's
// context.
func (t *loadTracker) lose(ref loadRef, id string) {
	t.retrack(ref, loaded{id: id, lost: true})
}

// keptCreated returns the creation time the written session keeps: the one
// loaded for loadSame and loadCarried, zero (a new session) otherwise.
func (r *resolved) keptCreated() time.Time {
	if r.kind == loadSame || r.kind == loadCarried {
		return r.created
	}
	return time.Time{}
}

// fromUser returns the user whose index lists the session as loaded, whose
// entry a write that names another user (or none) leaves behind: the user
// loaded for loadSame and loadRemoved, "" otherwise.
func (r *resolved) fromUser() string {
	if r.kind == loadSame || r.kind == loadRemoved {
		return r.user
	}
	return ""
}

// newLogin reports whether a write naming user `user` makes a new login of
// that user, for maxSessionsPerUser: not a RegenerateId that carries the
// user's own session to a new id (the old id goes, the user keeps one
// session), which must not be weighed against the session it replaces.
func (r *resolved) newLogin(user string) bool {
	return user != "" && !(r.kind == loadCarried && r.user == user)
}

// sameBase returns the values a per-key merge starts from: the ones loaded
// for loadSame, nil (every key is new) otherwise.
func (r *resolved) sameBase() map[string]any {
	if r.kind == loadSame {
		return r.base
	}
	return nil
}

// mapShard returns the shard of map `m`, by its address (Go's collector does
// not move heap objects), so that a map written under another id than it was
// loaded from (RegenerateId) is found.
func (t *loadTracker) mapShard(m *gmap.StrAnyMap) *mapShard {
	return t.mapShardAt(uintptr(unsafe.Pointer(m)))
}

func (t *loadTracker) mapShardAt(addr uintptr) *mapShard {
	return &t.maps[fibonacci(addr)]
}

// fibonacci hashes an address to a shard index.
func fibonacci(addr uintptr) uint64 {
	return uint64(addr) * 0x9E3779B97F4A7C15 >> (64 - trackerShardBits)
}

func (t *loadTracker) idShard(id string) *idShard {
	return &t.ids[shardIndex(id)&(trackerShards-1)]
}

// handOut returns `data` as the map GetSession hands out, tracked as loaded
// as `l`. The map is a slot of a slab (see mapSlab).
func (t *loadTracker) handOut(data map[string]any, l loaded) *gmap.StrAnyMap {
	kv := gmap.NewKVMapFrom(data, true)
	a := &t.alloc[shardIndex(l.id)&(slabAllocators-1)]
	a.mu.Lock()
	if a.cur == nil || a.used == slabMaps {
		a.cur, a.used = t.newSlab(), 0
	}
	s, i := a.cur, a.used
	a.used++
	a.mu.Unlock()
	if s == nil {
		m := &gmap.StrAnyMap{KVMap: kv}
		t.track(m, l)
		return m
	}
	m := &s.maps[i]
	m.KVMap = kv
	e := &s.loads[i]
	sh := t.mapShard(m)
	sh.mu.Lock()
	e.loaded = l
	t.list(e)
	sh.mu.Unlock()
	return m
}

// newSlab makes a slab and registers it, or returns nil if the allocator
// did not align it (see mapSlab).
func (t *loadTracker) newSlab() *mapSlab {
	s := new(mapSlab)
	base := uintptr(unsafe.Pointer(s))
	if base&(slabBytes-1) != 0 {
		return nil
	}
	s.loads = new([slabMaps]load)
	w := weak.Make(s)
	sh := &t.slabs[fibonacci(base)]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uintptr]weak.Pointer[mapSlab])
	}
	sh.m[base] = w
	sh.mu.Unlock()
	runtime.AddCleanup(s, untrackSlab, slabArg{t: t, base: base, w: w, loads: s.loads})
	return s
}

// slabLoad returns the load of map `m` if it was handed out by handOut, nil
// otherwise.
func (t *loadTracker) slabLoad(m *gmap.StrAnyMap) *load {
	e, _ := t.slabEntry(m)
	return e
}

// slabEntry returns the load of map `m` and its slab if `m` was handed out
// by handOut, nils otherwise.
func (t *loadTracker) slabEntry(m *gmap.StrAnyMap) (*load, *mapSlab) {
	addr := uintptr(unsafe.Pointer(m))
	base := addr &^ (slabBytes - 1)
	sh := &t.slabs[fibonacci(base)]
	sh.mu.Lock()
	w, ok := sh.m[base]
	sh.mu.Unlock()
	if !ok {
		return nil, nil
	}
	// A live slab at `base` holds the live map `m` if `m` lies in it: no
	// other object can.
	s := w.Value()
	if s == nil || uintptr(unsafe.Pointer(s)) != base {
		return nil, nil
	}
	i := (addr - base) / unsafe.Sizeof(gmap.StrAnyMap{})
	if i >= slabMaps || &s.maps[i] != m {
		return nil, nil
	}
	return &s.loads[i], s
}

type slabArg struct {
	t     *loadTracker
	base  uintptr
	w     weak.Pointer[mapSlab]
	loads *[slabMaps]load
}

// untrackSlab forgets the loads of a slab that has been collected (the
// cleanup newSlab attaches to it).
func untrackSlab(a slabArg) {
	t := a.t
	for i := range a.loads {
		sh := t.mapShardAt(a.base + uintptr(i)*unsafe.Sizeof(gmap.StrAnyMap{}))
		sh.mu.Lock() // the lock the load was written under
		t.unlist(&a.loads[i])
		sh.mu.Unlock()
	}
	sh := &t.slabs[fibonacci(a.base)]
	sh.mu.Lock()
	if sh.m[a.base] == a.w { // not a new slab at the same address
		delete(sh.m, a.base)
	}
	sh.mu.Unlock()
}

// track records that `m`, a map made elsewhere, was loaded as `l`.
func (t *loadTracker) track(m *gmap.StrAnyMap, l loaded) {
	ref := loadRef{sh: t.mapShard(m), w: weak.Make(m)}
	t.store(m, ref, l)
}

// loadRef is where lookup found, or looked for, a map's load, handed to
// retrack so that a write finds it once.
type loadRef struct {
	sh   *mapShard
	slab *load                        // the load of a map from handOut
	keep *mapSlab                     // its slab: the caller may drop the map before retrack
	w    weak.Pointer[gmap.StrAnyMap] // else the map, made elsewhere
}

// lookup returns what `m` was loaded as, if it is tracked, the request
// whose RemoveAll deleted its session since (see removed), and a reference
// for retrack. resolve is its one caller.
func (t *loadTracker) lookup(m *gmap.StrAnyMap) (loaded, reqKey, loadRef, bool) {
	ref := loadRef{sh: t.mapShard(m)}
	ref.slab, ref.keep = t.slabEntry(m)
	if ref.slab == nil {
		ref.w = weak.Make(m)
	}
	ref.sh.mu.Lock()
	defer ref.sh.mu.Unlock()
	e := ref.slab
	if e == nil {
		e = ref.sh.loads[ref.w]
	}
	if e == nil || e.id == "" {
		return loaded{}, reqKey{}, ref, false
	}
	ids := t.idShard(e.id)
	ids.mu.Lock()
	by := e.removedBy
	ids.mu.Unlock()
	return e.loaded, by, ref, true
}

// retrack replaces what the map of `ref` (from resolve) is known to hold
// after it was written, as `l`, so a second write of the same map sends only
// what changed since the first. A map that was not tracked (a new session's)
// is tracked from now on. It clears the record of a RemoveAll: the write
// came after it.
//
// A map made elsewhere that has been collected since lookup is not tracked
// again. A map from handOut cannot have been: `ref` holds its slab, whose
// cleanup would otherwise have run before the load is listed again, leaving
// it listed for good.
func (t *loadTracker) retrack(ref loadRef, l loaded) {
	if ref.slab != nil {
		t.store(nil, ref, l)
		runtime.KeepAlive(ref.keep)
		return
	}
	t.store(ref.w.Value(), ref, l)
}

// store records `m` (made into `ref`) as holding `l`, tracking it if it was
// not. `m` is nil for a map from handOut, whose load `ref` holds.
func (t *loadTracker) store(m *gmap.StrAnyMap, ref loadRef, l loaded) {
	sh := ref.sh
	e := ref.slab
	if e != nil {
		sh.mu.Lock()
		t.unlist(e)
	} else {
		if m == nil {
			return
		}
		sh.mu.Lock()
		if sh.loads == nil {
			sh.loads = make(map[weak.Pointer[gmap.StrAnyMap]]*load)
		}
		e = sh.loads[ref.w]
		if e == nil {
			e = &load{m: ref.w}
			sh.loads[ref.w] = e
			// Not the map itself in the argument: the cleanup would keep it
			// reachable.
			runtime.AddCleanup(m, untrack, untrackArg{t: t, sh: sh, w: ref.w})
		} else {
			t.unlist(e)
		}
	}
	e.loaded = l
	e.removedBy = reqKey{}
	t.list(e)
	sh.mu.Unlock()
}

// list adds load `e` to the loads of its id; unlist removes it. The caller
// holds the lock of e's mapShard.
func (t *loadTracker) list(e *load) {
	ids := t.idShard(e.id)
	ids.mu.Lock()
	ids.push(e)
	ids.mu.Unlock()
}

func (t *loadTracker) unlist(e *load) {
	ids := t.idShard(e.id)
	ids.mu.Lock()
	ids.unlink(e)
	ids.mu.Unlock()
}

// push puts `e` at the front of the list; unlink takes it out, if it is in.
// The caller holds the lock.
func (ids *idShard) push(e *load) {
	e.prev, e.next, e.listed = nil, ids.loads, true
	if e.next != nil {
		e.next.prev = e
	}
	ids.loads = e
}

func (ids *idShard) unlink(e *load) {
	if !e.listed {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		ids.loads = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
}

type untrackArg struct {
	t  *loadTracker
	sh *mapShard
	w  weak.Pointer[gmap.StrAnyMap]
}

// untrack forgets the load of a map made elsewhere that has been collected
// (the cleanup store attaches to it).
func untrack(a untrackArg) {
	a.sh.mu.Lock()
	if e := a.sh.loads[a.w]; e != nil {
		delete(a.sh.loads, a.w)
		a.t.unlist(e)
	}
	a.sh.mu.Unlock()
}

// size returns the number of loads tracked, for tests: those of the maps in
// use, and those of finished requests still in a slab (see mapSlab).
func (t *loadTracker) size() (n int) {
	for i := range t.ids {
		sh := &t.ids[i]
		sh.mu.Lock()
		for e := sh.loads; e != nil; e = e.next {
			n++
		}
		sh.mu.Unlock()
	}
	return n
}

// removed records that a RemoveAll with `ctx` deleted session `id`, in every
// load of the session still in use: a later write of the same request's map
// (gf's Session.RemoveAll, then Set) starts a new session under the id,
// while a write of another request that loaded the session before is
// dropped (see resolve). A RemoveAll with a context that cannot be
// told apart from others (see ctxKey) clears the record of an earlier one:
// who deleted the session last is then unknown, and writes that loaded it
// before are dropped.
func (t *loadTracker) removed(ctx context.Context, id string) {
	by := ctxKey(ctx)
	ids := t.idShard(id)
	ids.mu.Lock()
	for e := ids.loads; e != nil; e = e.next {
		if e.id == id {
			e.removedBy = by
		}
	}
	ids.mu.Unlock()
}

// logStaleWrite logs a write dropped because the session `name` (its
// handle, or the memory storage's id) loaded was deleted while the request
// ran. The line names the session by its handle, as every log line does.
func logStaleWrite(ctx context.Context, backend, name string) {
	if !IsHandle(name) {
		name = Handle(name)
	}
	g.Log().Infof(ctx, `gfsession: %s: session %q was deleted while a request that had loaded it ran: its write is dropped`, backend, shortId(name))
}

// reqKey is a request's context as a comparable value that does not keep the
// context reachable (a ghttp context holds its request, and so the session
// map the tracker must let go): the context's dynamic type and, for a
// pointer, its address. The zero reqKey names no request.
//
// An address names one context only while that context is alive. The
// tracker compares the context of a RemoveAll, kept in a load, with the
// context of a later write of the load's map: gf's Session holds its map and
// its context together, and the load existed before the RemoveAll, so the
// writing request's context was alive all along and cannot have taken the
// address of another, collected, context.
type reqKey struct {
	t reflect.Type
	p uintptr
}

// ctxKey returns the reqKey of `ctx` (gf's Session calls the storage with
// the context of its request every time: ghttp gives each request a context
// of its own). A context derived by a wrapper (StorageObserved's span)
// stands for the one the wrapper was called with (callerCtxKey). A context
// of an empty type (context.Background(), context.TODO()) is one value for
// every caller: code that runs several Sessions of one id on it (tests,
// jobs) is taken for one request. A context of another non-pointer type
// cannot be told apart: its key is zero.
func ctxKey(ctx context.Context) reqKey {
	if ctx == nil {
		return reqKey{}
	}
	if caller, ok := ctx.Value(callerCtxKey{}).(context.Context); ok && caller != nil {
		ctx = caller
	}
	v := reflect.ValueOf(ctx)
	switch {
	case v.Kind() == reflect.Pointer:
		return reqKey{t: v.Type(), p: v.Pointer()}
	case v.Type().Size() == 0:
		return reqKey{t: v.Type()}
	}
	return reqKey{}
}

// callerCtxKey is the context value under which a storage wrapper that
// derives a context of its own keeps the one it was called with.
type callerCtxKey struct{}

// sameValue reports whether `a` and `b` are equal session values, so that a
// key a request read but did not change is not written back.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int:
		y, ok := b.(int)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y) && x.Location() == y.Location()
	case nil:
		return b == nil
	}
	if b == nil {
		return false
	}
	// A map, slice or pointer handed back unchanged is the very same one (the
	// memory storage shares values): identity settles it without a deep walk.
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() == vb.Type() {
		switch va.Kind() {
		case reflect.Map, reflect.Slice, reflect.Pointer:
			if va.Pointer() == vb.Pointer() && (va.Kind() == reflect.Pointer || va.Len() == vb.Len()) {
				return true
			}
		}
	}
	return reflect.DeepEqual(a, b)
}
