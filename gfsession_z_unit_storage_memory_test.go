package gfsession_test

import (
	"context"
	"testing"
	"time"

	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

func newMemory(t *testing.T, config ...gfsession.MemoryConfig) *gfsession.StorageMemory {
	s := gfsession.NewStorageMemory(config...)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

func TestStorageMemory_Conformance(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) gsession.Storage { return newMemory(t) },
		storagetest.MergesKeys(),
		storagetest.DropsStaleWrites(),
		storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{MaxLifetime: d})
		}),
		storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{UserKey: userKey})
		}),
		storagetest.RequireAll(),
		storagetest.Excuse("CorruptData", "memory keeps Go values, never a stored form"),
		storagetest.Excuse("CryptoKeys", "memory keeps Go values, never a stored form"),
		storagetest.Excuse("SealBoundToId", "memory keeps Go values, never a stored form"),
	)
}

func TestStorageMemory_MaxSessions(t *testing.T) {
	const max = 50
	s := newMemory(t, gfsession.MemoryConfig{MaxSessions: max})
	m := gsession.New(time.Minute, s)
	for i := 0; i < 3*max; i++ {
		sess := m.New(context.Background(), storagetest.NewId())
		require.NoError(t, sess.Set("i", i))
		require.NoError(t, sess.Close())
		n, err := s.Count(context.Background())
		require.NoError(t, err)
		require.LessOrEqual(t, n, max, "after %d sessions", i+1)
	}
	n, _ := s.Count(context.Background())
	assert.Equal(t, max, n, "the bound is reached and kept")
}

func TestStorageMemory_Sweeper(t *testing.T) {
	s := newMemory(t, gfsession.MemoryConfig{CleanupInterval: 20 * time.Millisecond})
	m := gsession.New(50*time.Millisecond, s)
	for i := 0; i < 100; i++ {
		sess := m.New(context.Background(), storagetest.NewId())
		require.NoError(t, sess.Set("k", "v"))
		require.NoError(t, sess.Close())
	}
	n, _ := s.Count(context.Background())
	require.Equal(t, 100, n)
	require.Eventually(t, func() bool {
		n, _ := s.Count(context.Background())
		return n == 0
	}, 5*time.Second, 10*time.Millisecond, "the sweeper must free expired sessions")
}

// TestStorageMemory_ExpiresNotDuringRequest is a session whose idle TTL
// would run out while a slow request that loaded it is still working: the
// load restarts the TTL, so the request's write keeps the whole session.
func TestStorageMemory_ExpiresNotDuringRequest(t *testing.T) {
	// The request outlives the first TTL by 200 ms; each sleep is 400 ms
	// inside a TTL, so a busy machine cannot make the test fail.
	const ttl = time.Second
	m := gsession.New(ttl, newMemory(t, gfsession.MemoryConfig{CleanupInterval: -1}))
	ctx := context.Background()
	id := storagetest.NewId()
	login := m.New(ctx, id)
	require.NoError(t, login.SetMap(map[string]any{"user": "alice"}))
	require.NoError(t, login.Close())

	time.Sleep(ttl * 6 / 10) // idle, but not for a whole TTL
	slow := m.New(ctx, id)
	user, err := slow.Get("user")
	require.NoError(t, err)
	require.Equal(t, "alice", user.String())
	time.Sleep(ttl * 6 / 10) // the request's own work, past the first TTL
	require.NoError(t, slow.Set("page", "/x"))
	require.NoError(t, slow.Close())

	data, err := m.New(ctx, id).Data()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"user": "alice", "page": "/x"}, data)
}
