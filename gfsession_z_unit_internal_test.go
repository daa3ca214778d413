package gfsession

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStorageMemory_Close(t *testing.T) {
	s := NewStorageMemory(MemoryConfig{CleanupInterval: time.Millisecond})
	require.NotNil(t, s.done, "a sweeper runs when CleanupInterval > 0")
	require.NoError(t, s.Close(context.Background()))
	select {
	case <-s.done:
	default:
		t.Fatal("Close returned before the sweeper goroutine ended")
	}
	require.NoError(t, s.Close(context.Background()), "Close is idempotent")

	s = NewStorageMemory(MemoryConfig{CleanupInterval: -1})
	assert.Nil(t, s.done, "no goroutine when the sweeper is disabled")
	require.NoError(t, s.Close(context.Background()))
}
