package gfsession_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
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

// memReqCtx is a context of its own, as each ghttp request has.
func memReqCtx() context.Context {
	return context.WithValue(context.Background(), memReqCtxKey{}, gfsession.NewSessionId())
}

type memReqCtxKey struct{}

// removeAllThenSetUnderFlood runs gf's Session.RemoveAll, then Set and
// Close, in one request on `st`, with 20k removals of other sessions by
// other requests in between (a flood of unknown ids, each replaced by the
// middleware): the write must start a new session under the id.
func removeAllThenSetUnderFlood(t *testing.T, st gsession.Storage) {
	t.Helper()
	m := gsession.New(time.Minute, st)
	id := gfsession.NewSessionId()
	login := m.New(memReqCtx(), id)
	require.NoError(t, login.SetMap(map[string]any{"uid": "alice"}))
	require.NoError(t, login.Close())

	req := m.New(memReqCtx(), id)
	require.Equal(t, "alice", req.MustGet("uid").String())
	require.NoError(t, req.RemoveAll())
	for i := 0; i < 20000; i++ {
		require.NoError(t, st.RemoveAll(memReqCtx(), gfsession.NewSessionId()))
	}
	require.NoError(t, req.Set("flash", "signed out"))
	require.NoError(t, req.Close())

	stored, err := m.New(memReqCtx(), id).Data()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"flash": "signed out"}, stored, "the request's write after its own RemoveAll was lost")
}

// staleWriteLogShortensId drops a stale write on `st` (a request writes a
// session deleted by another one while it ran) and checks that the line
// logged for it names the session by a shortened id only.
func staleWriteLogShortensId(t *testing.T, st gsession.Storage) {
	t.Helper()
	logs := captureLog(t)

	m := gsession.New(time.Minute, st)
	id := gfsession.NewSessionId()
	login := m.New(memReqCtx(), id)
	require.NoError(t, login.Set("uid", "alice"))
	require.NoError(t, login.Close())
	slow := m.New(memReqCtx(), id)
	require.Equal(t, "alice", slow.MustGet("uid").String())
	require.NoError(t, st.RemoveAll(memReqCtx(), id), "a logout elsewhere")
	require.NoError(t, slow.Set("page", 2))
	require.NoError(t, slow.Close())

	out := logs.String()
	require.Contains(t, out, "its write is dropped", "the stale write is logged")
	assert.Contains(t, out, gfsession.Handle(id)[:8], "the log names the session by its handle")
	assert.NotContains(t, out, id, "the log holds a whole session id")
	data, err := m.New(memReqCtx(), id).Data()
	require.NoError(t, err)
	assert.Empty(t, data, "the stale write is dropped")
}

func TestStorageMemory_RemoveAllThenSetUnderFlood(t *testing.T) {
	removeAllThenSetUnderFlood(t, newMemory(t, gfsession.MemoryConfig{CleanupInterval: -1}))
}

func TestStorageMemory_StaleWriteLogShortensId(t *testing.T) {
	staleWriteLogShortensId(t, newMemory(t, gfsession.MemoryConfig{CleanupInterval: -1}))
}

func TestStorageMemory_NilData(t *testing.T) {
	s := newMemory(t)
	id := gfsession.NewSessionId()
	err := s.SetSession(context.Background(), id, nil, time.Minute)
	require.Error(t, err)
	assert.Equal(t, gcode.CodeInvalidParameter, gerror.Code(err))
	assert.NotContains(t, err.Error(), id)
}

// TestStorageMemory_UserIndexFollowsStored is a slow request that loaded a
// session logged in as alice and writes another key after a concurrent
// request logged the session out or switched it to bob. The memory storage
// merges per key, so the logout or switch stands, and DestroyUser finds
// the session under whoever it names.
func TestStorageMemory_UserIndexFollowsStored(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		other func(s *gsession.Session)
		want  map[string]any
	}{
		{"logout", func(s *gsession.Session) { require.NoError(t, s.Remove("uid")) }, map[string]any{"page": 2}},
		{"switch", func(s *gsession.Session) { require.NoError(t, s.Set("uid", "bob")) }, map[string]any{"uid": "bob", "page": 2}},
		{"logout and login", func(s *gsession.Session) {
			require.NoError(t, s.RemoveAll())
			require.NoError(t, s.Set("uid", "alice"))
		}, map[string]any{"uid": "alice"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemory(t, gfsession.MemoryConfig{UserKey: "uid", CleanupInterval: -1})
			m := gsession.New(time.Hour, s)
			id := gfsession.NewSessionId()
			login := m.New(memReqCtx(), id)
			require.NoError(t, login.SetMap(map[string]any{"uid": "alice", "page": 1}))
			require.NoError(t, login.Close())

			slow := m.New(memReqCtx(), id)
			require.Equal(t, "alice", slow.MustGet("uid").String())
			other := m.New(memReqCtx(), id)
			tt.other(other)
			require.NoError(t, other.Close())
			require.NoError(t, slow.Set("page", 2))
			require.NoError(t, slow.Close())

			stored, err := m.New(memReqCtx(), id).Data()
			require.NoError(t, err)
			require.Equal(t, tt.want, stored)
			for _, user := range []string{"alice", "bob"} {
				n, err := s.DestroyUser(ctx, user)
				require.NoError(t, err)
				if stored["uid"] == user {
					assert.Equal(t, 1, n, "the session stored as %s's escaped DestroyUser", user)
				} else {
					assert.Equal(t, 0, n, "DestroyUser(%s) destroyed a session that is not %s's", user, user)
				}
			}
			n, err := s.Count(ctx)
			require.NoError(t, err)
			if _, ok := stored["uid"]; ok {
				assert.Equal(t, 0, n)
			} else {
				assert.Equal(t, 1, n)
			}
		})
	}
}

// TestStorageMemory_MaxSessionsBoundsMemory creates sessions of 10 KB in a
// loop, as a flood of new clients does, on a storage bounded to 100
// sessions: the heap must stay bounded by the live sessions, not grow with
// the sessions that came and went.
func TestStorageMemory_MaxSessionsBoundsMemory(t *testing.T) {
	const (
		max      = 100
		sessions = 20000
		size     = 10 << 10
	)
	s := newMemory(t, gfsession.MemoryConfig{MaxSessions: max, CleanupInterval: -1})
	m := gsession.New(time.Minute, s)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := 0; i < sessions; i++ {
		sess := m.New(memReqCtx(), gfsession.NewSessionId())
		require.NoError(t, sess.Set("blob", make([]byte, size)))
		require.NoError(t, sess.Close())
		if i%100 == 0 {
			// A reader of a live session now and then.
			_, _ = s.GetSession(memReqCtx(), gfsession.NewSessionId(), time.Minute)
		}
	}
	n, err := s.Count(context.Background())
	require.NoError(t, err)
	require.Equal(t, max, n)
	// The live sessions hold 1 MB; what came and went held 200 MB.
	const bound = 24 << 20
	var after uint64
	bounded := assert.Eventually(t, func() bool {
		after = heap()
		return after < before+bound
	}, 5*time.Second, 20*time.Millisecond)
	assert.True(t, bounded, "the heap grew from %d to %d MB with %d live sessions of 10 KB", before>>20, after>>20, max)
	runtime.KeepAlive(s)
}

// TestStorageFile_RemoveAllThenSetUnderFlood runs the same on the file
// storage, whose writes rely on the same record of a request's RemoveAll.
func TestStorageFile_RemoveAllThenSetUnderFlood(t *testing.T) {
	st, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: t.TempDir(), CleanupInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close(context.Background())) })
	removeAllThenSetUnderFlood(t, st)
}
