package gfsession

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/frame/g"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testCtxKey struct{}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logTo sends what g.Log() logs to a buffer until the end of the test.
func logTo(t *testing.T) *syncBuffer {
	b := &syncBuffer{}
	prev := g.Log().GetWriter()
	g.Log().SetWriter(b)
	t.Cleanup(func() { g.Log().SetWriter(prev) })
	return b
}

func TestLoadTracker(t *testing.T) {
	var tr loadTracker
	ctx := context.Background()
	m1 := gmap.NewStrAnyMap(true)
	m2 := gmap.NewStrAnyMap(true)
	tr.track(m1, loaded{id: "id1", base: map[string]any{"a": 1}, user: "x"})
	r := tr.resolve(ctx, m1, "id1")
	require.Equal(t, loadSame, r.kind)
	assert.Equal(t, map[string]any{"a": 1}, r.base)
	assert.Equal(t, "x", r.user)
	r2 := tr.resolve(ctx, m1, "id9")
	assert.Equal(t, loadCarried, r2.kind, "found by the map alone, whatever id it is written to (RegenerateId)")
	assert.Equal(t, "id1", r2.id, "with the id it was loaded from")
	assert.Equal(t, loadFresh, tr.resolve(ctx, m2, "id1").kind, "maps are told apart by identity, not content")

	tr.retrack(r.ref, loaded{id: "id1", base: map[string]any{"a": 2}})
	assert.Equal(t, map[string]any{"a": 2}, tr.resolve(ctx, m1, "id1").base)

	// A map nobody loaded (a new session's first write) is remembered by
	// the retrack after its write, under the id it was written to.
	r = tr.resolve(ctx, m2, "id2")
	require.Equal(t, loadFresh, r.kind)
	tr.retrack(r.ref, loaded{id: "id2", base: map[string]any{"b": 1}, user: "z"})
	r = tr.resolve(ctx, m2, "id2")
	require.Equal(t, loadSame, r.kind)
	assert.Equal(t, map[string]any{"b": 1}, r.base)
	assert.Equal(t, "z", r.user)

	runtime.KeepAlive(m2)
}

// TestLoadTracker_Resolve is the table of what a write starts from: each
// case loads (or not) a map, runs what happens to it, and checks what
// resolve answers for a write of it by request A.
func TestLoadTracker_Resolve(t *testing.T) {
	reqA := context.WithValue(context.Background(), testCtxKey{}, "a")
	reqB := context.WithValue(context.Background(), testCtxKey{}, "b")
	created := time.UnixMilli(1_700_000_000_000)
	base := map[string]any{"user": "ann", "k": 1}
	load := loaded{id: "id1", created: created, user: "ann", base: base}
	cases := []struct {
		name    string
		run     func(tr *loadTracker, m *gmap.StrAnyMap)
		writeTo string
		kind    loadKind
		created time.Time      // keptCreated
		from    string         // fromUser
		base    map[string]any // sameBase
	}{
		{"a map the storage did not hand out", func(tr *loadTracker, m *gmap.StrAnyMap) {},
			"id1", loadFresh, time.Time{}, "", nil},
		{"loaded and written back", func(tr *loadTracker, m *gmap.StrAnyMap) { tr.track(m, load) },
			"id1", loadSame, created, "ann", base},
		{"RegenerateId: written to a new id", func(tr *loadTracker, m *gmap.StrAnyMap) { tr.track(m, load) },
			"id2", loadCarried, created, "", nil},
		{"RemoveAll by the same request, then Set", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id1")
		}, "id1", loadRemoved, time.Time{}, "ann", nil},
		{"deleted by another request while this one ran", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqB, "id1")
		}, "id1", loadSame, created, "ann", base},
		{"deleted by this request, then by another", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id1")
			tr.removed(reqB, "id1")
		}, "id1", loadSame, created, "ann", base},
		{"deleted by a context that cannot be told apart", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id1")
			tr.removed(struct{ context.Context }{reqA}, "id1")
		}, "id1", loadSame, created, "ann", base},
		{"deleted through a wrapper's derived context", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(context.WithValue(reqB, callerCtxKey{}, reqA), "id1")
		}, "id1", loadRemoved, time.Time{}, "ann", nil},
		{"RemoveAll of another session", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id2")
		}, "id1", loadSame, created, "ann", base},
		{"RemoveAll, then a write: the write starts over", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id1")
			r := tr.resolve(reqA, m, "id1")
			tr.retrack(r.ref, loaded{id: "id1", created: created.Add(time.Hour), user: "bob"})
		}, "id1", loadSame, created.Add(time.Hour), "bob", nil},
		{"loaded after a RemoveAll", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.removed(reqA, "id1")
			tr.track(m, load)
		}, "id1", loadSame, created, "ann", base},
		{"RemoveAll by the same request, then RegenerateId: a new session, nothing carried", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			tr.removed(reqA, "id1")
		}, "id2", loadFresh, time.Time{}, "", nil},
		{"RegenerateId of a session deleted meanwhile", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			r := tr.resolve(reqA, m, "id2")
			ok, err := tr.mayWrite(reqA, "test", &r, "id2", func(context.Context, *loaded) (bool, error) { return false, nil })
			if !ok && err == nil {
				// gf's RegenerateId then removes the old id, with the
				// request's context: that must not revive the map.
				tr.removed(reqA, "id1")
				return
			}
			panic("the write of a session deleted meanwhile went on")
		}, "id2", loadLost, time.Time{}, "", nil},
		{"RegenerateId of a session deleted meanwhile, then RemoveAll and Set", func(tr *loadTracker, m *gmap.StrAnyMap) {
			tr.track(m, load)
			r := tr.resolve(reqA, m, "id2")
			_, _ = tr.mayWrite(reqA, "test", &r, "id2", func(context.Context, *loaded) (bool, error) { return false, nil })
			tr.removed(reqA, "id2")
		}, "id2", loadRemoved, time.Time{}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tr loadTracker
			m := gmap.NewStrAnyMap(true)
			c.run(&tr, m)
			r := tr.resolve(reqA, m, c.writeTo)
			assert.Equal(t, c.kind, r.kind, "kind")
			assert.Equal(t, c.created, r.keptCreated(), "kept creation time")
			assert.Equal(t, c.from, r.fromUser(), "user whose entry moves")
			assert.Equal(t, c.base, r.sameBase(), "base of a per-key merge")
			runtime.KeepAlive(m)
		})
	}
}

// TestLoadTracker_RemembersLiveMaps checks that a load is remembered for as
// long as its map is in use, however many loads come after it (a slow
// logout request must still delete the keys it removed), and that the
// loads of collected maps are dropped, `base` and all.
func TestLoadTracker_RemembersLiveMaps(t *testing.T) {
	var tr loadTracker
	inUse := gmap.NewStrAnyMap(true)
	tr.track(inUse, loaded{id: "id1", base: map[string]any{"user": "alice"}})
	for round := 0; round < 4; round++ {
		// Many short requests, their maps dropped at once.
		for i := 0; i < 5000; i++ {
			tr.track(gmap.NewStrAnyMap(true), loaded{id: "id1", base: map[string]any{"big": make([]byte, 1024)}})
		}
		runtime.GC()
	}
	r := tr.resolve(context.Background(), inUse, "id1")
	require.Equal(t, loadSame, r.kind, "a map still in use is never forgotten")
	assert.Equal(t, map[string]any{"user": "alice"}, r.base)
	require.Eventually(t, func() bool {
		runtime.GC()
		return tr.size() == 1
	}, 10*time.Second, 10*time.Millisecond, "the loads of collected maps are dropped")
	ids := tr.idShard("id1")
	ids.mu.Lock()
	n := 0
	for e := ids.loads; e != nil; e = e.next {
		if e.id == "id1" {
			n++
		}
	}
	assert.Equal(t, 1, n, "and so are they from the session's list")
	ids.mu.Unlock()
	runtime.KeepAlive(inUse)
}

// TestLoadTracker_Removals checks that the record of a request's own
// RemoveAll stays with its load however many other sessions are removed
// meanwhile, and that a map loaded or written after the removal is not
// taken for removed.
func TestLoadTracker_Removals(t *testing.T) {
	var tr loadTracker
	reqA := context.WithValue(context.Background(), testCtxKey{}, "a")
	reqB := context.WithValue(context.Background(), testCtxKey{}, "b")
	m := gmap.NewStrAnyMap(true)
	tr.track(m, loaded{id: "id1"})
	assert.Equal(t, loadSame, tr.resolve(reqA, m, "id1").kind, "nothing removed yet")

	tr.removed(reqA, "id1")
	assert.Equal(t, loadRemoved, tr.resolve(reqA, m, "id1").kind, "A removed the session after loading it")
	assert.Equal(t, loadSame, tr.resolve(reqB, m, "id1").kind, "B did not remove it")

	// A map loaded after the removal is a load of whatever is there now.
	later := gmap.NewStrAnyMap(true)
	tr.track(later, loaded{id: "id1"})
	assert.Equal(t, loadSame, tr.resolve(reqA, later, "id1").kind, "a load after the removal")
	// So is a map written after it.
	tr.retrack(tr.resolve(reqA, m, "id1").ref, loaded{id: "id1"})
	assert.Equal(t, loadSame, tr.resolve(reqA, m, "id1").kind, "a write after the removal")

	m2 := gmap.NewStrAnyMap(true)
	tr.track(m2, loaded{id: "id2"})
	tr.removed(reqA, "id2")
	// However many other sessions are removed meanwhile, by other requests,
	// the record stays with the load: nothing is forgotten.
	for i := 0; i < 20000; i++ {
		tr.removed(reqB, NewSessionId())
	}
	assert.Equal(t, loadRemoved, tr.resolve(reqA, m2, "id2").kind, "not forgotten")
	// A later removal by another request is the last word.
	tr.removed(reqB, "id2")
	assert.Equal(t, loadSame, tr.resolve(reqA, m2, "id2").kind)
	assert.Equal(t, loadRemoved, tr.resolve(reqB, m2, "id2").kind)
	// And one by a context that cannot be told apart is nobody's.
	tr.removed(struct{ context.Context }{reqB}, "id2")
	assert.Equal(t, loadSame, tr.resolve(reqB, m2, "id2").kind)
	runtime.KeepAlive(m)
	runtime.KeepAlive(m2)
	runtime.KeepAlive(later)
}

// recordingDriver is a sessionDriver that keeps sessions in a map and
// records the calls the writer makes, in order.
type recordingDriver struct {
	calls  []string
	stored map[string]*sessionWrite
	fail   error
}

func (d *recordingDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	d.calls = append(d.calls, "put:"+[]string{"new", "exists", "created"}[w.match])
	if d.fail != nil {
		return false, d.fail
	}
	cur := d.stored[w.id]
	switch {
	case w.match == matchExists && cur == nil,
		w.match == matchCreated && (cur == nil || !cur.created.Equal(w.loaded.created)):
		return false, nil
	}
	d.stored[w.id] = w
	return true, nil
}

func (d *recordingDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	d.calls = append(d.calls, "holds")
	cur := d.stored[l.id]
	return cur != nil && cur.created.Equal(l.created), nil
}

func (d *recordingDriver) remove(ctx context.Context, id string) error {
	d.calls = append(d.calls, "remove")
	delete(d.stored, id)
	return nil
}

func (d *recordingDriver) indexUser(ctx context.Context, user, id string) error {
	d.calls = append(d.calls, "index:"+user)
	return nil
}

// TestSessionWriter is the table of the whole-session write path: each case
// loads (or not) a session, may change the store while the request runs,
// writes the request's map and checks which driver calls it made, in order,
// what is stored and what was logged.
func TestSessionWriter(t *testing.T) {
	ctx := context.WithValue(context.Background(), testCtxKey{}, "req")
	other := context.WithValue(context.Background(), testCtxKey{}, "other")
	created := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	cases := []struct {
		name   string
		legacy bool                                                  // load it as gf's format
		load   map[string]any                                        // nil: not loaded
		during func(w *sessionWriter, d *recordingDriver, id string) // while the request runs
		write  map[string]any
		calls  []string
		stored bool   // a session is stored afterwards
		logged string // in the log, "" for nothing
	}{
		{name: "new session", write: map[string]any{"k": 1},
			calls: []string{"put:new"}, stored: true},
		{name: "login on a new session", write: map[string]any{"uid": "ann"},
			calls: []string{"index:ann", "put:new"}, stored: true},
		{name: "loaded, changed", load: map[string]any{"uid": "ann"}, write: map[string]any{"uid": "ann", "k": 2},
			calls: []string{"put:created"}, stored: true},
		{name: "loaded in gf's format", legacy: true, load: map[string]any{"k": 1}, write: map[string]any{"k": 2},
			calls: []string{"put:exists"}, stored: true},
		{name: "switch of user", load: map[string]any{"uid": "ann"}, write: map[string]any{"uid": "bob"},
			calls: []string{"index:bob", "put:created"}, stored: true},
		{name: "logout", load: map[string]any{"uid": "ann", "k": 1}, write: map[string]any{"k": 1},
			calls: []string{"put:created"}, stored: true},
		{name: "emptied", load: map[string]any{"k": 1}, write: map[string]any{},
			calls: []string{"remove"}},
		{name: "deleted while the request ran", load: map[string]any{"uid": "ann"}, write: map[string]any{"uid": "ann", "k": 2},
			during: func(w *sessionWriter, d *recordingDriver, id string) { require.NoError(t, w.removeAll(other, id)) },
			calls:  []string{"remove", "put:created"}, logged: "was deleted while a request that had loaded it ran"},
		{name: "replaced while the request ran", load: map[string]any{"k": 1}, write: map[string]any{"k": 2},
			during: func(w *sessionWriter, d *recordingDriver, id string) {
				d.stored[id] = &sessionWrite{id: id, created: time.Now()}
			},
			calls: []string{"put:created"}, stored: true, logged: "was deleted while a request that had loaded it ran"},
		{name: "RemoveAll by the request itself, then Set", load: map[string]any{"uid": "ann"}, write: map[string]any{"uid": "bob"},
			during: func(w *sessionWriter, d *recordingDriver, id string) { require.NoError(t, w.removeAll(ctx, id)) },
			calls:  []string{"remove", "index:bob", "put:new"}, stored: true},
		{name: "RemoveAll by the request itself, then the same user logs in again", load: map[string]any{"uid": "ann"}, write: map[string]any{"uid": "ann"},
			during: func(w *sessionWriter, d *recordingDriver, id string) { require.NoError(t, w.removeAll(ctx, id)) },
			calls:  []string{"remove", "index:ann", "put:new"}, stored: true},
		// Past MaxLifetime: nothing written, nothing deleted (the session
		// loaded reads as none; its TTL ends at the same instant).
		{name: "past MaxLifetime", load: map[string]any{"k": 1}, write: map[string]any{"k": 2},
			during: func(w *sessionWriter, d *recordingDriver, id string) { w.maxLifetime = time.Second },
			calls:  nil, stored: true},
		{name: "past MaxLifetime, replaced while the request ran", load: map[string]any{"k": 1}, write: map[string]any{"k": 2},
			during: func(w *sessionWriter, d *recordingDriver, id string) {
				w.maxLifetime = time.Second
				d.stored[id] = &sessionWrite{id: id, created: time.Now()}
			},
			calls: nil, stored: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs := logTo(t)
			var tr loadTracker
			env, err := newEnvelope("", nil)
			require.NoError(t, err)
			d := &recordingDriver{stored: map[string]*sessionWrite{}}
			w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d, userKey: "uid"}
			id := NewSessionId()
			m := gmap.NewStrAnyMap(true)
			if c.load != nil {
				d.stored[id] = &sessionWrite{id: id, created: created}
				loadCreated := created
				if c.legacy {
					loadCreated = time.Time{}
				}
				m = w.loaded(id, loadCreated, c.load)
			}
			if c.during != nil {
				c.during(w, d, id)
			}
			m.Clear()
			m.Sets(c.write)
			require.NoError(t, w.setSession(ctx, id, m, time.Hour))
			assert.Equal(t, c.calls, d.calls)
			assert.Equal(t, c.stored, d.stored[id] != nil, "stored")
			if c.logged != "" {
				assert.Contains(t, logs.String(), c.logged)
			} else {
				assert.NotContains(t, logs.String(), "deleted while")
			}
		})
	}

	t.Run("RegenerateId past MaxLifetime stays unwritten after gf removes the old id", func(t *testing.T) {
		var tr loadTracker
		env, _ := newEnvelope("", nil)
		d := &recordingDriver{stored: map[string]*sessionWrite{}}
		w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d, maxLifetime: time.Second}
		id, id2 := NewSessionId(), NewSessionId()
		d.stored[id] = &sessionWrite{id: id, created: created}
		m := w.loaded(id, created, map[string]any{"k": 1})
		require.NoError(t, w.setSession(ctx, id2, m, time.Hour)) // RegenerateId's write
		require.NoError(t, w.removeAll(ctx, id))                 // RegenerateId's RemoveAll of the old id
		require.NoError(t, w.setSession(ctx, id2, m, time.Hour)) // Close
		assert.Nil(t, d.stored[id2], "a session past its lifetime came back under a new id")
		runtime.KeepAlive(m)
	})

	t.Run("keeps the creation time, and RegenerateId carries it over", func(t *testing.T) {
		var tr loadTracker
		env, _ := newEnvelope("", nil)
		d := &recordingDriver{stored: map[string]*sessionWrite{}}
		w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d}
		id, id2 := NewSessionId(), NewSessionId()
		d.stored[id] = &sessionWrite{id: id, created: created}
		m := w.loaded(id, created, map[string]any{"k": 1})
		require.NoError(t, w.setSession(ctx, id, m, time.Hour))
		assert.True(t, d.stored[id].created.Equal(created))
		require.NoError(t, w.setSession(ctx, id2, m, time.Hour))
		assert.True(t, d.stored[id2].created.Equal(created), "RegenerateId keeps the lifetime")
		assert.Equal(t, matchNone, d.stored[id2].match, "a new session under the new id")
		runtime.KeepAlive(m)
	})

	t.Run("RegenerateId carries over only a session still stored", func(t *testing.T) {
		logs := logTo(t)
		var tr loadTracker
		env, _ := newEnvelope("", nil)
		d := &recordingDriver{stored: map[string]*sessionWrite{}}
		w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d}
		id, id2 := NewSessionId(), NewSessionId()
		d.stored[id] = &sessionWrite{id: id, created: created}
		m := w.loaded(id, created, map[string]any{"role": "user"})
		require.NoError(t, w.removeAll(other, id)) // DestroyUser, a logout elsewhere
		m.Set("role", "admin")
		require.NoError(t, w.setSession(ctx, id2, m, time.Hour))
		assert.Equal(t, []string{"remove", "holds"}, d.calls)
		assert.Nil(t, d.stored[id2], "the deleted session is not stored under the new id")
		assert.Contains(t, logs.String(), "was deleted while a request that had loaded it ran")
		runtime.KeepAlive(m)
	})

	t.Run("bad input and driver errors", func(t *testing.T) {
		var tr loadTracker
		env, _ := newEnvelope("", nil)
		d := &recordingDriver{stored: map[string]*sessionWrite{}}
		w := &sessionWriter{backend: "test", tracker: &tr, env: env, driver: d, maxBlob: 64, maxBlobKey: "maxSize"}
		assert.Error(t, checkWrite("test", "../x", gmap.NewStrAnyMap(true)))
		assert.ErrorContains(t, checkWrite("test", NewSessionId(), nil), "session data is nil")
		err := w.setSession(ctx, NewSessionId(), gmap.NewStrAnyMapFrom(map[string]any{"k": strings.Repeat("x", 100)}, true), time.Hour)
		assert.ErrorContains(t, err, "more than maxSize (64 bytes)")
		d.fail = errors.New("backend down")
		assert.ErrorContains(t, w.setSession(ctx, NewSessionId(), gmap.NewStrAnyMapFrom(map[string]any{"k": 1}, true), time.Hour), "backend down")
		assert.Empty(t, d.stored, "nothing stored")
	})
}

// TestLoadTracker_HandedOutMaps checks the maps GetSession hands out: each
// is found again from its address alone (so a write pays no weak pointer),
// a map still in use is remembered however many loads come and go, and the
// loads of collected maps are dropped, so that what the tracker holds does
// not grow with the loads made.
func TestLoadTracker_HandedOutMaps(t *testing.T) {
	var tr loadTracker
	inUse := tr.handOut(map[string]any{"user": "alice"}, loaded{id: "id1", base: map[string]any{"user": "alice"}})
	require.NotNil(t, tr.slabLoad(inUse), "a handed-out map is found from its address: the allocator aligned its slab")
	assert.Nil(t, tr.slabLoad(gmap.NewStrAnyMap(true)), "a map made elsewhere is not taken for one")
	const churn = 20000
	for i := 0; i < churn; i++ {
		m := tr.handOut(map[string]any{"n": i}, loaded{id: "id1", base: map[string]any{"big": make([]byte, 1024)}})
		require.Equal(t, loadSame, tr.resolve(context.Background(), m, "id1").kind)
		if i%1000 == 0 {
			runtime.GC()
		}
	}
	r := tr.resolve(context.Background(), inUse, "id1")
	require.Equal(t, loadSame, r.kind, "a map still in use is never forgotten")
	assert.Equal(t, map[string]any{"user": "alice"}, r.base)

	// Once their slabs are collected, their loads are dropped: what is left
	// is the slab of the map in use and the slabs being filled.
	bound := (1 + slabAllocators) * int(slabMaps)
	require.Eventually(t, func() bool {
		runtime.GC()
		return tr.size() <= bound
	}, 10*time.Second, 10*time.Millisecond, "at most %d loads left of %d", bound, churn)
	tr.removed(context.Background(), "id1")
	require.Equal(t, loadRemoved, tr.resolve(context.Background(), inUse, "id1").kind, "a removal reaches the map in use")
	runtime.KeepAlive(inUse)
}
