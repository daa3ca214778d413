package gfsession

import (
	"reflect"
	"sync"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
)

const (
	trackerShards = 64  // power of two
	trackerSlots  = 128 // loads remembered per shard
)

// loadTracker remembers, for each session map handed out by GetSession, which
// session it was loaded from and what it held then. SetSession receives the
// whole map back and can so tell what the request changed: the keys it set
// or changed and the keys it removed. Backends that merge per key (memory,
// redis-hash) write only those, so concurrent requests that touch different
// keys of one session do not overwrite each other; others keep what they
// loaded along (creation time, user) in `extra`.
//
// It is a ring of the most recent loads per shard (by session id), holding
// the maps themselves, so that a map is recognised by identity and nothing
// needs cleaning up: a load is forgotten once trackerSlots newer loads of
// its shard have been made, i.e. with more than trackerShards*trackerSlots
// (8192) requests in flight at once. A write whose load was forgotten is
// treated as a write of a session nobody loaded: every key it holds is
// written and none is deleted, so it can lose a key it removed but never
// deletes another request's keys. At most that many maps are kept alive
// after their requests ended.
type loadTracker struct {
	shards [trackerShards]trackerShard
}

type trackerShard struct {
	mu    sync.Mutex
	next  int
	slots []trackerSlot // allocated on first use
}

type trackerSlot struct {
	m *gmap.StrAnyMap
	loaded
}

// loaded is a session's state as one request loaded it.
type loaded struct {
	id   string
	base map[string]any // never mutated
	// extra is backend data kept with the load (creation time, user, ...).
	extra any
}

func (t *loadTracker) shard(id string) *trackerShard {
	return &t.shards[shardIndex(id)&(trackerShards-1)]
}

// find returns the index of the slot holding `m`, newest first, or -1.
// The caller holds sh.mu.
func (sh *trackerShard) find(m *gmap.StrAnyMap) int {
	n := len(sh.slots)
	for i := 1; i <= n; i++ {
		j := (sh.next - i + n) % n
		if sh.slots[j].m == m {
			return j
		}
	}
	return -1
}

// track records that `m` was loaded from session `id` holding `base`.
func (t *loadTracker) track(m *gmap.StrAnyMap, id string, base map[string]any, extra any) {
	sh := t.shard(id)
	sh.mu.Lock()
	if sh.slots == nil {
		sh.slots = make([]trackerSlot, trackerSlots)
	}
	sh.slots[sh.next] = trackerSlot{m: m, loaded: loaded{id: id, base: base, extra: extra}}
	sh.next = (sh.next + 1) % len(sh.slots)
	sh.mu.Unlock()
}

// lookup returns what `m` was loaded as, if it was loaded from session `id`
// and is still remembered.
func (t *loadTracker) lookup(m *gmap.StrAnyMap, id string) (loaded, bool) {
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.slots == nil {
		return loaded{}, false
	}
	if j := sh.find(m); j >= 0 && sh.slots[j].id == id {
		return sh.slots[j].loaded, true
	}
	return loaded{}, false
}

// retrack replaces what `m` is known to hold after it was written to `id`, so
// a second write of the same map sends only what changed since the first.
func (t *loadTracker) retrack(m *gmap.StrAnyMap, id string, base map[string]any, extra any) {
	sh := t.shard(id)
	sh.mu.Lock()
	if sh.slots != nil {
		if j := sh.find(m); j >= 0 {
			sh.slots[j].loaded = loaded{id: id, base: base, extra: extra}
			sh.mu.Unlock()
			return
		}
	}
	sh.mu.Unlock()
	t.track(m, id, base, extra)
}

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
