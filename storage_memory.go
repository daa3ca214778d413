package gfsession

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/os/gsession"
)

const (
	// DefaultMemoryCleanupInterval is how often StorageMemory sweeps out
	// expired sessions when MemoryConfig.CleanupInterval is 0.
	DefaultMemoryCleanupInterval = time.Minute

	memoryShards = 64 // power of two
	// evictionSample is how many sessions of a full shard are looked at to
	// pick the one closest to expiry for eviction (as Redis samples).
	evictionSample = 8
)

// MemoryConfig configures StorageMemory. The zero value is ready to use.
type MemoryConfig struct {
	// MaxSessions bounds the number of live sessions; when a new session
	// would exceed it, the session closest to expiry among a small sample is
	// evicted. 0 means no bound.
	MaxSessions int `json:"maxSessions"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 means none: only the idle TTL applies.
	MaxLifetime time.Duration `json:"maxLifetime"`
	// CleanupInterval is how often expired sessions are swept out of memory
	// (they are never served after expiry either way). 0 means
	// DefaultMemoryCleanupInterval; a negative value disables the sweeper.
	CleanupInterval time.Duration `json:"cleanupInterval"`
}

// StorageMemory keeps sessions in process memory: for one server, tests and
// development. It is gf's StorageMemory done right:
//
//   - isolation: GetSession returns a copy, so a request's writes stay
//     invisible to other requests of the same session until it closes;
//   - per-key merge: SetSession applies only the keys the request changed or
//     removed, so concurrent requests setting different keys all survive;
//   - sliding expiry without a timer per session, an absolute lifetime
//     (MaxLifetime) and an optional bound on the number of sessions.
//
// Values are stored as they are, keeping their Go types; like any in-process
// cache it stores references, so do not mutate a map or slice after setting
// it in a session.
type StorageMemory struct {
	gsession.StorageBase
	config  MemoryConfig
	shards  [memoryShards]memoryShard
	count   atomic.Int64
	tracker loadTracker
	stop    chan struct{}
	done    chan struct{}
	closed  sync.Once
}

type memoryShard struct {
	mu sync.RWMutex
	m  map[string]*memoryEntry
}

// memoryEntry is one session. Its data map is never mutated once stored: a
// write replaces the entry's map with a new one.
type memoryEntry struct {
	data    map[string]any
	created int64        // Unix nanoseconds
	expires atomic.Int64 // Unix nanoseconds
}

// NewStorageMemory creates a memory storage. With a CleanupInterval > 0 (the
// default), it starts one goroutine that sweeps expired sessions until Close.
func NewStorageMemory(config ...MemoryConfig) *StorageMemory {
	s := &StorageMemory{}
	if len(config) > 0 {
		s.config = config[0]
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*memoryEntry)
	}
	interval := s.config.CleanupInterval
	if interval == 0 {
		interval = DefaultMemoryCleanupInterval
	}
	if interval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.cleaner(interval)
	}
	return s
}

func init() {
	Register(TypeMemory, newStorageMemoryFromConfig)
}

func newStorageMemoryFromConfig(_ context.Context, m map[string]any) (gsession.Storage, error) {
	var config MemoryConfig
	if _, err := decodeConfig(configPath, m, &config); err != nil {
		return nil, err
	}
	return NewStorageMemory(config), nil
}

func (s *StorageMemory) shard(id string) *memoryShard {
	// FNV-1a, inlined: cheaper than hash/maphash for short ids.
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return &s.shards[h&(memoryShards-1)]
}

// New returns a new random session id (see NewSessionId).
func (s *StorageMemory) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession returns a copy of the session's data, or nil when the session
// does not exist, has been idle for longer than its TTL, has outlived
// MaxLifetime, or `sessionId` is not a valid id. It does not move the TTL:
// gf calls UpdateTTL when the request ends.
func (s *StorageMemory) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	sh := s.shard(sessionId)
	sh.mu.RLock()
	e := sh.m[sessionId]
	sh.mu.RUnlock()
	now := time.Now().UnixNano()
	if e == nil || !s.alive(e, now) {
		return nil, nil
	}
	data := gmap.NewStrAnyMapFrom(maps.Clone(e.data), true)
	s.tracker.track(data, sessionId, e.data, nil)
	return data, nil
}

func (s *StorageMemory) alive(e *memoryEntry, now int64) bool {
	if e.expires.Load() <= now {
		return false
	}
	return s.config.MaxLifetime <= 0 || now-e.created < int64(s.config.MaxLifetime)
}

// expiry returns when an entry created at `created` expires if touched now.
func (s *StorageMemory) expiry(created, now int64, ttl time.Duration) int64 {
	exp := now + int64(ttl)
	if s.config.MaxLifetime > 0 {
		if limit := created + int64(s.config.MaxLifetime); limit < exp {
			return limit
		}
	}
	return exp
}

// SetSession applies what the request changed in `sessionData` to the stored
// session: keys it set or changed are written, keys it removed are deleted,
// keys it left alone keep whatever a concurrent request stored meanwhile. A
// session left with no keys is deleted. The TTL restarts at `ttl`.
func (s *StorageMemory) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return errInvalidId(sessionId)
	}
	var (
		base    map[string]any
		written = sessionData.Map()
		now     = time.Now().UnixNano()
		sh      = s.shard(sessionId)
	)
	if l := s.tracker.lookup(sessionData, sessionId); l != nil {
		base = l.base
	}
	sh.mu.Lock()
	cur := sh.m[sessionId]
	if cur != nil && !s.alive(cur, now) {
		cur = nil
	}
	var (
		data    map[string]any
		created = now
	)
	if cur != nil {
		created = cur.created
		data = maps.Clone(cur.data)
	} else {
		data = make(map[string]any, len(written))
	}
	for k := range base {
		if _, ok := written[k]; !ok {
			delete(data, k)
		}
	}
	for k, v := range written {
		if old, ok := base[k]; !ok || !sameValue(old, v) {
			data[k] = v
		}
	}
	if len(data) == 0 {
		if _, ok := sh.m[sessionId]; ok {
			delete(sh.m, sessionId)
			s.count.Add(-1)
		}
		sh.mu.Unlock()
		return nil
	}
	e := &memoryEntry{data: data, created: created}
	e.expires.Store(s.expiry(created, now, ttl))
	if _, exists := sh.m[sessionId]; !exists {
		if s.config.MaxSessions > 0 && s.count.Load() >= int64(s.config.MaxSessions) {
			s.evictLocked(sh, now)
		}
		s.count.Add(1)
	}
	sh.m[sessionId] = e
	sh.mu.Unlock()
	s.tracker.retrack(sessionData, sessionId, data, nil)
	return nil
}

// evictLocked removes one session from `sh`: an expired one if the sample
// holds one, else the one closest to expiry.
func (s *StorageMemory) evictLocked(sh *memoryShard, now int64) {
	var (
		victim string
		soon   int64
		n      int
	)
	for id, e := range sh.m {
		exp := e.expires.Load()
		if victim == "" || exp < soon {
			victim, soon = id, exp
		}
		if n++; n >= evictionSample || exp <= now {
			break
		}
	}
	if victim != "" {
		delete(sh.m, victim)
		s.count.Add(-1)
	}
}

// UpdateTTL restarts the idle TTL of an existing session (never beyond
// MaxLifetime). A missing session is not an error.
func (s *StorageMemory) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	sh := s.shard(sessionId)
	sh.mu.RLock()
	e := sh.m[sessionId]
	sh.mu.RUnlock()
	if e != nil {
		now := time.Now().UnixNano()
		if s.alive(e, now) {
			e.expires.Store(s.expiry(e.created, now, ttl))
		}
	}
	return nil
}

// RemoveAll deletes the session. A missing session is not an error.
func (s *StorageMemory) RemoveAll(ctx context.Context, sessionId string) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	sh := s.shard(sessionId)
	sh.mu.Lock()
	if _, ok := sh.m[sessionId]; ok {
		delete(sh.m, sessionId)
		s.count.Add(-1)
	}
	sh.mu.Unlock()
	return nil
}

// Len returns the number of sessions held, expired ones not yet swept
// included.
func (s *StorageMemory) Len() int {
	return int(s.count.Load())
}

func (s *StorageMemory) cleaner(interval time.Duration) {
	defer close(s.done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
			s.sweep()
		}
	}
}

// sweep deletes expired sessions, one shard lock at a time.
func (s *StorageMemory) sweep() {
	now := time.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if !s.alive(e, now) {
				delete(sh.m, id)
				s.count.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// Close stops the sweeper. It is idempotent; the storage keeps serving
// sessions after Close, without the background sweep.
func (s *StorageMemory) Close(ctx context.Context) error {
	s.closed.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
	return nil
}
