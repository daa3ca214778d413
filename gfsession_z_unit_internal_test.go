package gfsession

import (
	"context"
	"testing"
	"time"

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
