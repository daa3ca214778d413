package gfsession

import (
	"reflect"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/gogf/gf/v2/container/gmap"
)

// loadTracker remembers, for each session map handed out by GetSession, which
// session it was loaded from and what it held then. SetSession receives the
// whole map back and can so tell what the request changed: the keys it set
// or changed and the keys it removed. Backends that merge per key (memory,
// redis-hash) write only those, so concurrent requests that touch different
// keys of one session do not overwrite each other.
//
// Entries are keyed by a weak pointer to the map and vanish when the map is
// garbage-collected, so a request that never closes its session leaks
// nothing.
type loadTracker struct {
	m sync.Map // weak.Pointer[gmap.StrAnyMap] -> *loaded
}

// loaded is a session's state as one request loaded it.
type loaded struct {
	id   string
	base map[string]any // never mutated
	// extra is backend data kept with the load (redis-hash keeps the stored
	// bytes of every field here, to tell changed values by their encoding).
	extra any
}

// track records that `m` was loaded from session `id` holding `base`.
func (t *loadTracker) track(m *gmap.StrAnyMap, id string, base map[string]any, extra any) {
	key := weak.Make(m)
	t.m.Store(key, &loaded{id: id, base: base, extra: extra})
	runtime.AddCleanup(m, func(key weak.Pointer[gmap.StrAnyMap]) { t.m.Delete(key) }, key)
}

// lookup returns what `m` was loaded as, if it was loaded from session `id`.
func (t *loadTracker) lookup(m *gmap.StrAnyMap, id string) *loaded {
	v, ok := t.m.Load(weak.Make(m))
	if !ok {
		return nil
	}
	l := v.(*loaded)
	if l.id != id {
		return nil
	}
	return l
}

// retrack replaces what `m` is known to hold after it was written to `id`, so
// a second write of the same map sends only what changed since the first.
func (t *loadTracker) retrack(m *gmap.StrAnyMap, id string, base map[string]any, extra any) {
	key := weak.Make(m)
	if _, ok := t.m.Load(key); ok {
		t.m.Store(key, &loaded{id: id, base: base, extra: extra})
		return
	}
	t.track(m, id, base, extra)
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
	return reflect.DeepEqual(a, b)
}
