package gfsession

import (
	"context"
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
	l, ok := tr.lookup(m1, "id1")
	require.True(t, ok)
	assert.Equal(t, map[string]any{"a": 1}, l.base)
	assert.Equal(t, "x", l.extra)
	_, ok = tr.lookup(m1, "id2")
	assert.False(t, ok, "a map loaded from another session (RegenerateId) has no base here")
	_, ok = tr.lookup(m2, "id1")
	assert.False(t, ok, "maps are told apart by identity, not content")

	tr.retrack(m1, "id1", map[string]any{"a": 2}, "y")
	l, _ = tr.lookup(m1, "id1")
	assert.Equal(t, map[string]any{"a": 2}, l.base)

	// A load is forgotten after trackerSlots newer loads of its shard.
	for i := 0; i < trackerSlots; i++ {
		tr.track(gmap.NewStrAnyMap(true), "id1", nil, nil)
	}
	_, ok = tr.lookup(m1, "id1")
	assert.False(t, ok)
}

// TestStorageMemory_ForgottenLoad checks the safe side of a forgotten load:
// the write keeps every key it holds and deletes nothing it cannot prove the
// request removed.
func TestStorageMemory_ForgottenLoad(t *testing.T) {
	s := NewStorageMemory(MemoryConfig{CleanupInterval: -1})
	ctx := context.Background()
	id := NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"a": 1, "b": 2}, true), time.Minute))
	loadedA, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	// Another request adds "c" meanwhile.
	other, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	other.Set("c", 3)
	require.NoError(t, s.SetSession(ctx, id, other, time.Minute))
	// Flood the tracker so that the first request's load is forgotten.
	for i := 0; i < trackerShards*trackerSlots; i++ {
		s.tracker.track(gmap.NewStrAnyMap(true), id, nil, nil)
	}
	loadedA.Remove("a")
	loadedA.Set("d", 4)
	require.NoError(t, s.SetSession(ctx, id, loadedA, time.Minute))
	got, err := s.GetSession(ctx, id, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 3, got.Get("c"), "another request's key survives")
	assert.Equal(t, 4, got.Get("d"))
	assert.Equal(t, 2, got.Get("b"))
}

// FileSessionPath is StorageFile.sessionPath, for the external tests.
func FileSessionPath(s *StorageFile, id string) string { return s.sessionPath(id) }
