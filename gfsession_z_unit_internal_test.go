package gfsession

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stopped reports whether the goroutine of `b` has returned.
func stopped(b *background) bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// TestBackground_Close checks, for every storage with background work, that
// the goroutine starts only for an interval > 0 and that Close (idempotent)
// returns only after it has ended.
func TestBackground_Close(t *testing.T) {
	newFile := func(interval time.Duration) (*background, func(context.Context) error) {
		s, err := NewStorageFile(FileConfig{Path: t.TempDir(), CleanupInterval: interval})
		require.NoError(t, err)
		return &s.cleaner, s.Close
	}
	newMemory := func(interval time.Duration) (*background, func(context.Context) error) {
		s := NewStorageMemory(MemoryConfig{CleanupInterval: interval})
		return &s.sweeper, s.Close
	}
	for name, newStorage := range map[string]func(time.Duration) (*background, func(context.Context) error){
		"file": newFile, "memory": newMemory,
	} {
		t.Run(name, func(t *testing.T) {
			bg, closeFn := newStorage(time.Millisecond)
			require.NotNil(t, bg.done, "a goroutine runs when the interval is > 0")
			assert.False(t, stopped(bg))
			require.NoError(t, closeFn(context.Background()))
			assert.True(t, stopped(bg), "Close returned before the goroutine ended")
			require.NoError(t, closeFn(context.Background()), "Close is idempotent")

			bg, closeFn = newStorage(-1)
			assert.Nil(t, bg.done, "no goroutine when the interval is negative")
			require.NoError(t, closeFn(context.Background()))
		})
	}
}

func TestBackground_CancelsWork(t *testing.T) {
	var b background
	started := make(chan struct{})
	b.start(time.Millisecond, func(ctx context.Context) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done() // long work that honours its context
	})
	<-started
	b.stop()
	assert.True(t, stopped(&b), "stop must cancel running work and wait for it")
	b.stop()
}

func TestLoadTracker(t *testing.T) {
	var tr loadTracker
	m1 := gmap.NewStrAnyMap(true)
	m2 := gmap.NewStrAnyMap(true)
	tr.track(m1, "id1", map[string]any{"a": 1}, "x")
	l, ref, ok := tr.lookup(m1)
	require.True(t, ok)
	assert.Equal(t, map[string]any{"a": 1}, l.base)
	assert.Equal(t, "x", l.extra)
	l, _, ok = tr.lookup(m1)
	assert.True(t, ok, "found by the map alone, whatever id it is written to (RegenerateId)")
	assert.Equal(t, "id1", l.id, "with the id it was loaded from")
	_, _, ok = tr.lookup(m2)
	assert.False(t, ok, "maps are told apart by identity, not content")

	tr.retrack(ref, "id1", map[string]any{"a": 2}, "y")
	l, _, _ = tr.lookup(m1)
	assert.Equal(t, map[string]any{"a": 2}, l.base)

	// A map nobody loaded (a new session's first write) is remembered by
	// the retrack after its write, under the id it was written to.
	_, ref, ok = tr.lookup(m2)
	require.False(t, ok)
	tr.retrack(ref, "id2", map[string]any{"b": 1}, "z")
	l, _, ok = tr.lookup(m2)
	require.True(t, ok)
	assert.Equal(t, map[string]any{"b": 1}, l.base)
	assert.Equal(t, "z", l.extra)

	runtime.KeepAlive(m2)
}

// TestLoadTracker_RemembersLiveMaps checks that a load is remembered for as
// long as its map is in use, however many loads come after it (a slow
// logout request must still delete the keys it removed), and that the
// loads of collected maps are dropped, `base` and all.
func TestLoadTracker_RemembersLiveMaps(t *testing.T) {
	var tr loadTracker
	inUse := gmap.NewStrAnyMap(true)
	tr.track(inUse, "id1", map[string]any{"user": "alice"}, nil)
	for round := 0; round < 4; round++ {
		// Many short requests, their maps dropped at once.
		for i := 0; i < 5000; i++ {
			tr.track(gmap.NewStrAnyMap(true), "id1", map[string]any{"big": make([]byte, 1024)}, nil)
		}
		runtime.GC()
	}
	l, _, ok := tr.lookup(inUse)
	require.True(t, ok, "a map still in use is never forgotten")
	assert.Equal(t, map[string]any{"user": "alice"}, l.base)
	require.Eventually(t, func() bool {
		runtime.GC()
		return tr.size() == 1
	}, 10*time.Second, 10*time.Millisecond, "the loads of collected maps are dropped")
	ids := tr.idShard("id1")
	ids.mu.Lock()
	assert.Len(t, ids.loads["id1"], 1, "and so are they from the session's list")
	ids.mu.Unlock()
	runtime.KeepAlive(inUse)
}

// TestStorageMemory_UntrackedMap checks the safe side of a write whose load
// is unknown (a map the storage did not hand out): the write keeps every
// key it holds and deletes nothing it cannot prove the request removed.
func TestStorageMemory_UntrackedMap(t *testing.T) {
	s := NewStorageMemory(MemoryConfig{CleanupInterval: -1})
	ctx := context.Background()
	id := NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"a": 1, "b": 2}, true), time.Minute))
	// Another request adds "c".
	other, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	other.Set("c", 3)
	require.NoError(t, s.SetSession(ctx, id, other, time.Minute))
	// A map holding what a request loaded before "c", without its load.
	untracked := gmap.NewStrAnyMapFrom(map[string]any{"b": 2, "d": 4}, true)
	require.NoError(t, s.SetSession(ctx, id, untracked, time.Minute))
	got, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": 1, "b": 2, "c": 3, "d": 4}, got.Map())
}

// TestStorageMemory_SlowRequestRemovesKey is a logout that runs while
// thousands of other requests come and go: the key it removes is deleted.
func TestStorageMemory_SlowRequestRemovesKey(t *testing.T) {
	s := NewStorageMemory(MemoryConfig{CleanupInterval: -1})
	ctx := context.Background()
	id := NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "alice", "theme": "dark"}, true), time.Minute))
	logout, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	for i := 0; i < 3*8192; i++ { // 3x what the tracker once remembered
		if i%4096 == 0 {
			runtime.GC()
		}
		short, err := s.GetSession(ctx, id, time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.UpdateTTL(ctx, id, time.Minute))
		_ = short
	}
	logout.Remove("user")
	require.NoError(t, s.SetSession(ctx, id, logout, time.Minute))
	got, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"theme": "dark"}, got.Map())
}

// FileSessionPath is StorageFile.sessionPath, for the external tests.
func FileSessionPath(s *StorageFile, id string) string { return s.sessionPath(id) }

type testCtxKey struct{}

// TestLoadTracker_Removals checks what tells a request's own RemoveAll (its
// write after it starts a new session) from another request's: the context,
// and the order of the load and the removal.
func TestLoadTracker_Removals(t *testing.T) {
	var tr loadTracker
	reqA := context.WithValue(context.Background(), testCtxKey{}, "a")
	reqB := context.WithValue(context.Background(), testCtxKey{}, "b")
	m := gmap.NewStrAnyMap(true)
	tr.track(m, "id1", nil, nil)
	l, _, _ := tr.lookup(m)
	assert.False(t, tr.removedBySelf(reqA, "id1", l), "nothing removed yet")

	tr.removed(reqA, "id1")
	l, _, _ = tr.lookup(m)
	assert.True(t, tr.removedBySelf(reqA, "id1", l), "A removed the session after loading it")
	assert.False(t, tr.removedBySelf(reqB, "id1", l), "B did not remove it")

	// A map loaded after the removal is a load of whatever is there now.
	later := gmap.NewStrAnyMap(true)
	tr.track(later, "id1", nil, nil)
	l2, _, _ := tr.lookup(later)
	assert.False(t, tr.removedBySelf(reqA, "id1", l2), "a load after the removal")
	// So is a map written after it.
	_, ref, _ := tr.lookup(m)
	tr.retrack(ref, "id1", nil, nil)
	l, _, _ = tr.lookup(m)
	assert.False(t, tr.removedBySelf(reqA, "id1", l), "a write after the removal")

	// A wrapper's derived context stands for its caller's.
	m2 := gmap.NewStrAnyMap(true)
	tr.track(m2, "id2", nil, nil)
	tr.removed(context.WithValue(reqB, callerCtxKey{}, reqA), "id2")
	l, _, _ = tr.lookup(m2)
	assert.True(t, tr.removedBySelf(reqA, "id2", l))

	// However many other sessions are removed meanwhile, by other requests,
	// the record stays with the load: nothing is forgotten.
	for i := 0; i < 20000; i++ {
		tr.removed(reqB, NewSessionId())
	}
	l, _, _ = tr.lookup(m2)
	assert.True(t, tr.removedBySelf(reqA, "id2", l), "not forgotten")
	// A later removal by another request is the last word.
	tr.removed(reqB, "id2")
	l, _, _ = tr.lookup(m2)
	assert.False(t, tr.removedBySelf(reqA, "id2", l))
	assert.True(t, tr.removedBySelf(reqB, "id2", l))
	// And one by a context that cannot be told apart is nobody's.
	tr.removed(struct{ context.Context }{reqB}, "id2")
	l, _, _ = tr.lookup(m2)
	assert.False(t, tr.removedBySelf(reqB, "id2", l))
	runtime.KeepAlive(m)
	runtime.KeepAlive(m2)
	runtime.KeepAlive(later)
}
