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

// FileSessionPath is the file of session `id` (named by its handle), for
// the external tests.
func FileSessionPath(s *StorageFile, id string) string { return s.sessionPath(Handle(id)) }
