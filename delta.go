package gfsession

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/frame/g"
)

const (
	trackerShardBits = 6
	trackerShards    = 1 << trackerShardBits
	trackerSlots     = 64      // slots per shard to start with
	trackerMaxSlots  = 1 << 16 // slots per shard at most (4M in all)
	trackerMaxScan   = 1024    // slots a full ring searches for a free one
)

// loadTracker remembers, for each session map handed out by GetSession, which
// session it was loaded from and what it held then. SetSession receives the
// whole map back and can so tell what the request changed: the keys it set
// or changed and the keys it removed. Backends that merge per key (memory,
// redis-hash) write only those, so concurrent requests that touch different
// keys of one session do not overwrite each other; others keep what they
// loaded along (creation time, user) in `extra`.
//
// A load is remembered for as long as its map is reachable: gf's Session
// holds the map for as long as the request can still write it (a Session
// may be closed, changed and closed again), and the tracker holds it only
// through a weak pointer, found again by weak pointer equality. Each shard
// (by the map's address) is a ring of slots; a new load takes the next slot whose
// map has been garbage collected, and the ring doubles when every map in it
// still looks reachable. A map looks reachable until a garbage collection
// has found it is not, so the ring holds about the loads made since the
// last collection. Only past trackerMaxSlots of those in one shard (4M in
// all) is a slot of a map that may be in use reused, which forgets that
// load. A write whose load was forgotten is treated as a write of a session
// nobody loaded: every key it holds is written and none is deleted, so it
// can lose a key it removed but never deletes another request's keys.
//
// What a load keeps (`base`, `extra`) stays in its slot until the slot is
// reused; the maps themselves are not kept alive.
type loadTracker struct {
	shards   [trackerShards]trackerShard
	removals [trackerShards]removalShard
	seq      atomic.Uint64 // the clock of loads, writes and removals
}

type trackerShard struct {
	mu    sync.Mutex
	next  int           // where the search for a free slot starts
	slots []trackerSlot // allocated on first use
}

type trackerSlot struct {
	m weak.Pointer[gmap.StrAnyMap] // zero or collected: the slot is free
	loaded
}

// loaded is a session's state as one request loaded it.
type loaded struct {
	id   string
	base map[string]any // never mutated
	// extra is backend data kept with the load (creation time, user, ...).
	extra any
	// seq orders loads and writes against RemoveAll (see removedBySelf).
	seq uint64
}

// shard returns the shard of map `m`, by its address (Go's collector does
// not move objects), so that a map written under another id than it was
// loaded from (RegenerateId) is found.
func (t *loadTracker) shard(m *gmap.StrAnyMap) *trackerShard {
	h := uint64(uintptr(unsafe.Pointer(m))) * 0x9E3779B97F4A7C15 // Fibonacci hashing
	return &t.shards[h>>(64-trackerShardBits)]
}

// find returns the index of the slot holding `w`, most recent loads first,
// or -1. It compares weak pointers only: calling Value on the slots would
// mark their maps reachable during a collection and keep dead ones alive.
// The caller holds sh.mu.
func (sh *trackerShard) find(w weak.Pointer[gmap.StrAnyMap]) int {
	n := len(sh.slots)
	for i := 1; i <= n; i++ {
		j := (sh.next - i + n) % n
		if sh.slots[j].m == w {
			return j
		}
	}
	return -1
}

// free returns the index of a slot whose map has been collected, searching
// from where the last search stopped, and doubles the ring when every map
// in it still looks reachable. A full ring (trackerMaxSlots) searches
// trackerMaxScan slots and then reuses the next one regardless. The caller
// holds sh.mu.
func (sh *trackerShard) free() int {
	n := len(sh.slots)
	scan := n
	if n >= trackerMaxSlots {
		scan = trackerMaxScan
	}
	for i := 0; i < scan; i++ {
		j := sh.next
		sh.next = (j + 1) % n
		if sh.slots[j].m.Value() == nil {
			return j
		}
	}
	if n >= trackerMaxSlots {
		j := sh.next
		sh.next = (j + 1) % n
		return j
	}
	sh.slots = append(sh.slots, make([]trackerSlot, max(n, trackerSlots))...)
	sh.next = n + 1
	return n
}

// track records that `m` was loaded from session `id` holding `base`.
func (t *loadTracker) track(m *gmap.StrAnyMap, id string, base map[string]any, extra any) {
	w := weak.Make(m)
	sh := t.shard(m)
	sh.mu.Lock()
	sh.slots[sh.free()] = trackerSlot{m: w, loaded: loaded{id: id, base: base, extra: extra, seq: t.seq.Add(1)}}
	sh.mu.Unlock()
}

// loadRef is where lookup looked for a map, handed to retrack so that a
// write searches its shard once: the weak pointer, made once per write, and
// the slot that held it, or -1.
type loadRef struct {
	sh   *trackerShard
	w    weak.Pointer[gmap.StrAnyMap]
	slot int
}

// lookup returns what `m` was loaded as, if it is remembered, and a
// reference for retrack. The load may be of another session than the one
// being written (gf's RegenerateId writes the map it loaded to a new id):
// callers compare loaded.id.
func (t *loadTracker) lookup(m *gmap.StrAnyMap) (loaded, loadRef, bool) {
	ref := loadRef{sh: t.shard(m), w: weak.Make(m)}
	ref.sh.mu.Lock()
	defer ref.sh.mu.Unlock()
	ref.slot = ref.sh.find(ref.w)
	if ref.slot >= 0 {
		return ref.sh.slots[ref.slot].loaded, ref, true
	}
	return loaded{}, ref, false
}

// retrack replaces what the map of `ref` (from lookup) is known to hold
// after it was written to `id`, so a second write of the same map sends only
// what changed since the first.
func (t *loadTracker) retrack(ref loadRef, id string, base map[string]any, extra any) {
	sh := ref.sh
	sh.mu.Lock()
	j := ref.slot
	// The slot is reused only once its map is collected, which the caller's
	// reference prevents, or when a full ring wraps: check it still holds
	// the map.
	if j < 0 || j >= len(sh.slots) || sh.slots[j].m != ref.w {
		j = -1
	}
	if j < 0 {
		j = sh.free()
		sh.slots[j].m = ref.w
	}
	sh.slots[j].loaded = loaded{id: id, base: base, extra: extra, seq: t.seq.Add(1)}
	sh.mu.Unlock()
}

// removed records that a RemoveAll with `ctx` deleted session `id`, so that
// a write of the same request after it (gf's Session.RemoveAll, then Set)
// starts a new session under the id, while a write of another request that
// loaded the session before is dropped (see removedBySelf). A context that
// cannot tell requests apart (see ctxKey) records nothing. The last
// removalsPerShard removals of each of trackerShards shards (by id) are
// kept: the write of a request follows its own RemoveAll within the
// request.
func (t *loadTracker) removed(ctx context.Context, id string) {
	by := ctxKey(ctx)
	if by == nil {
		return
	}
	sh := &t.removals[shardIndex(id)&(trackerShards-1)]
	sh.mu.Lock()
	if sh.byId == nil {
		sh.byId = make(map[string]removal)
		sh.ring = make([]removalAt, removalsPerShard)
	}
	seq := t.seq.Add(1)
	if old := sh.ring[sh.next]; old.id != "" && sh.byId[old.id].seq == old.seq {
		delete(sh.byId, old.id)
	}
	sh.ring[sh.next] = removalAt{id: id, seq: seq}
	sh.next = (sh.next + 1) % removalsPerShard
	sh.byId[id] = removal{by: by, seq: seq}
	sh.mu.Unlock()
}

// removedBySelf reports whether session `id`, which a request with `ctx`
// loaded (or last wrote) as `l`, was deleted after that by a RemoveAll of
// the same request.
func (t *loadTracker) removedBySelf(ctx context.Context, id string, l loaded) bool {
	sh := &t.removals[shardIndex(id)&(trackerShards-1)]
	sh.mu.Lock()
	r, ok := sh.byId[id]
	sh.mu.Unlock()
	return ok && l.seq < r.seq && r.by == ctxKey(ctx)
}

const removalsPerShard = 256

type removalShard struct {
	mu   sync.Mutex
	byId map[string]removal
	ring []removalAt // the order of removals, to forget the oldest
	next int
}

type removal struct {
	by  any // ctxKey of the RemoveAll's context
	seq uint64
}

type removalAt struct {
	id  string
	seq uint64
}

// logStaleWrite logs a write dropped because the session it loaded was
// deleted while the request ran.
func logStaleWrite(ctx context.Context, backend, id string) {
	g.Log().Infof(ctx, `gfsession: %s: session %q was deleted while a request that had loaded it ran: its write is dropped`, backend, shortId(id))
}

// ctxKey is `ctx` as a comparable value (gf's Session calls the storage
// with the context of its request every time: ghttp gives each request a
// context of its own), or nil when its type cannot be compared. A context
// derived by a wrapper (StorageObserved's span) stands for the one the
// wrapper was called with (callerCtxKey). context.Background() is one value
// for every caller: code that runs several Sessions of one id on it (tests,
// jobs) is taken for one request.
func ctxKey(ctx context.Context) any {
	if ctx == nil {
		return nil
	}
	if caller, ok := ctx.Value(callerCtxKey{}).(context.Context); ok {
		ctx = caller
	}
	if !reflect.TypeOf(ctx).Comparable() {
		return nil
	}
	return ctx
}

// callerCtxKey is the context value under which a storage wrapper that
// derives a context of its own keeps the one it was called with.
type callerCtxKey struct{}

// loadedMeta is what the last-writer-wins backends (file, redis) keep of a
// loaded session in the tracker's `extra`: its creation time, kept across
// rewrites for MaxLifetime, and its user (the userKey value), to move the
// user index entry when a write changes it.
type loadedMeta struct {
	created time.Time
	user    string
	legacy  bool // file: read from gf's layout, to be removed once rewritten
}

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
