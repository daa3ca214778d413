package gfsession

import (
	"context"
	"hash/maphash"
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
	// evicted. 0 (or, from code, a negative value) means no bound; the
	// config map refuses a negative value.
	MaxSessions int `json:"maxSessions"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 (or, from code, a negative value) means none:
	// only the idle TTL applies; the config map refuses a negative value.
	MaxLifetime time.Duration `json:"maxLifetime"`
	// CleanupInterval is how often expired sessions are swept out of memory
	// (they are never served after expiry either way). 0 means
	// DefaultMemoryCleanupInterval; a negative value (config map: "off", in
	// any case, or a negative duration such as "-1s") disables the sweeper.
	CleanupInterval time.Duration `json:"cleanupInterval" config:"negative"`
	// UserKey is the session key holding the user id, for DestroyUser ("log
	// out everywhere"). Empty disables the user index.
	UserKey string `json:"userKey"`
	// MaxSessionsPerUser bounds the live sessions of one user (by UserKey,
	// which it needs): when a write makes a session belong to a user who
	// then has more, the least recently active ones are destroyed. 1 is
	// "one login per account". 0 (or, from code, a negative value) means no bound; so does a value
	// without UserKey in code (the config map refuses one).
	MaxSessionsPerUser int `json:"maxSessionsPerUser"`
	// ClientInfo keeps with each session the client IP and User-Agent of
	// the request that created or last wrote it (from the ghttp request in
	// the context), for Admin.Sessions. Off by default: it is personal
	// data.
	ClientInfo bool `json:"clientInfo"`
}

// normalize applies the defaults of `c`: DefaultMemoryCleanupInterval for a
// CleanupInterval of 0. It finds no error: NewStorageMemory returns none, so
// negative values keep the meaning their fields document (the config map
// refuses them before, in decodeConfig).
func (c *MemoryConfig) normalize() {
	c.CleanupInterval = orDefault(c.CleanupInterval, DefaultMemoryCleanupInterval)
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
	usersMu sync.Mutex
	users   map[string]map[string]struct{} // user id -> session ids; guarded by usersMu
	sweeper background
	ttl     ttlSeen       // for Sessions
	limit   *sessionLimit // nil without MaxSessionsPerUser
}

var _ Admin = (*StorageMemory)(nil)

type memoryShard struct {
	mu sync.RWMutex
	m  map[string]*memoryEntry
}

// memoryEntry is one session. Its data map is never mutated once stored: a
// write replaces the entry's map with a new one.
type memoryEntry struct {
	client  string // ClientInfo's "ip\x00user-agent", "" for none
	data    map[string]any
	user    string       // value of MemoryConfig.UserKey in data
	created int64        // Unix nanoseconds
	expires atomic.Int64 // Unix nanoseconds
	// capped is when a request last used the session while MaxLifetime cut
	// its idle TTL short (Unix nanoseconds, 0: never), when the expiry no
	// longer tells (see activity).
	capped atomic.Int64
}

// NewStorageMemory creates a memory storage. With a CleanupInterval > 0 (the
// default), it starts one goroutine that sweeps expired sessions until Close.
func NewStorageMemory(config ...MemoryConfig) *StorageMemory {
	s := &StorageMemory{users: make(map[string]map[string]struct{})}
	if len(config) > 0 {
		s.config = config[0]
	}
	s.config.normalize()
	for i := range s.shards {
		s.shards[i].m = make(map[string]*memoryEntry)
	}
	if s.config.MaxSessionsPerUser > 0 && s.config.UserKey != "" {
		s.limit = &sessionLimit{backend: TypeMemory, max: s.config.MaxSessionsPerUser, list: s.userSessions,
			destroy: s.destroyUserHandle}
	}
	s.sweeper.start(s.config.CleanupInterval, func(context.Context) { s.sweep() })
	return s
}

func init() {
	Register(TypeMemory, configFactory(newStorageMemoryFromConfig))
}

// newStorageMemoryFromConfig builds the memory storage of a `sessionStorage`
// node, decoded into `config`.
func newStorageMemoryFromConfig(_ context.Context, config MemoryConfig, _ map[string]any) (gsession.Storage, error) {
	if err := limitNeedsUserKey(TypeMemory, config.MaxSessionsPerUser, config.UserKey); err != nil {
		return nil, err
	}
	return NewStorageMemory(config), nil
}

func (s *StorageMemory) shard(id string) *memoryShard {
	return &s.shards[shardIndex(id)]
}

// shardSeed seeds shardIndex: per process, so that a client cannot choose
// ids that all land in one shard.
var shardSeed = maphash.MakeSeed()

// shardIndex returns the shard of session `id` (hash/maphash: about 4 ns
// for a 32-character id, against 19 ns for an FNV-1a loop).
func shardIndex(id string) int {
	return int(maphash.String(shardSeed, id) & (memoryShards - 1))
}

// New returns a new random session id (see NewSessionId).
func (s *StorageMemory) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession returns a copy of the session's data, or nil when the session
// does not exist, has been idle for longer than its TTL, has outlived
// MaxLifetime, or `sessionId` is not a valid id. It restarts the idle TTL at
// `ttl` (never beyond MaxLifetime), so a session cannot expire while a
// request that loaded it is still running; gf's UpdateTTL or SetSession
// restarts it again when the request ends.
func (s *StorageMemory) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	s.ttl.note(ttl)
	sh := s.shard(sessionId)
	sh.mu.RLock()
	e := sh.m[sessionId]
	sh.mu.RUnlock()
	now := time.Now().UnixNano()
	if e == nil || !s.alive(e, now) {
		return nil, nil
	}
	s.touch(e, now, ttl)
	return s.tracker.handOut(maps.Clone(e.data), loaded{id: sessionId, created: time.Unix(0, e.created), base: e.data, entry: e}), nil
}

// touch restarts the idle TTL of entry `e` at `ttl` from `now` (never
// beyond MaxLifetime, nor back), and notes `now` as its last activity when
// MaxLifetime cut the TTL short.
func (s *StorageMemory) touch(e *memoryEntry, now int64, ttl time.Duration) {
	next := s.expiry(e.created, now, ttl)
	for {
		exp := e.expires.Load()
		if next <= exp || e.expires.CompareAndSwap(exp, next) {
			break
		}
	}
	if next < now+int64(ttl) {
		e.capped.Store(now)
	}
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
// session (a nil `sessionData` is an error, CodeInvalidParameter): keys it set or changed are written, keys it removed are deleted,
// keys it left alone keep whatever a concurrent request stored meanwhile. A
// session left with no keys is deleted. The TTL restarts at `ttl`.
//
// It follows the package's write rules (see Writes in the package
// documentation): a session deleted or replaced while the request ran, idle
// expiry and MaxLifetime included, stays so, checked under the shard lock
// with the write.
func (s *StorageMemory) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite(TypeMemory, sessionId, sessionData); err != nil {
		return err
	}
	s.ttl.note(ttl)
	client := s.clientOf(ctx)
	r := s.tracker.resolve(ctx, sessionData, sessionId)
	now := time.Now().UnixNano()
	holds := func(_ context.Context, l *loaded) (bool, error) { return s.holds(l, now), nil }
	if ok, _ := s.tracker.mayWrite(ctx, TypeMemory, &r, sessionId, holds); !ok {
		return nil
	}
	sh := s.shard(sessionId)
	sh.mu.Lock()
	cur := sh.m[sessionId]
	if cur != nil && !s.alive(cur, now) {
		cur = nil
	}
	if r.kind == loadSame && (cur == nil || (!r.created.IsZero() && cur.created != r.created.UnixNano())) {
		// Loaded (or written) by this request and deleted since, or deleted
		// and replaced by a new session under the id: it stays so.
		sh.mu.Unlock()
		logStaleWrite(ctx, TypeMemory, sessionId)
		return nil
	}
	data, nextBase, fast := s.merge(&r, cur, sessionData)
	if len(data) == 0 {
		s.deleteLocked(sh, sessionId)
		sh.mu.Unlock()
		// As RemoveAll: a further write of this map starts a new session.
		s.tracker.removed(ctx, sessionId)
		return nil
	}
	created := now
	if cur != nil {
		created = cur.created
	} else if c := r.keptCreated(); !c.IsZero() {
		created = c.UnixNano() // carried over by RegenerateId
	}
	e := s.install(sh, sessionId, data, created, now, ttl, client)
	sh.mu.Unlock()
	if e.added && s.config.MaxSessions > 0 {
		s.evict(sessionId, now)
	}
	if e.login && r.newLogin(e.entry.user) {
		s.limit.apply(ctx, e.entry.user)
	}
	// What the request's map holds from now on: the next write of the same
	// map (gf writes again when a closed Session is changed and closed
	// again) is a delta from here. Only the entry that holds exactly that
	// can stand for it.
	next := loaded{id: sessionId, created: time.Unix(0, created), base: nextBase}
	if fast {
		next.entry = e.entry
	}
	s.tracker.retrack(r.ref, next)
	return nil
}

// clientOf returns what MemoryConfig.ClientInfo keeps of the request of
// `ctx` (see clientInfo), "" without the option.
func (s *StorageMemory) clientOf(ctx context.Context) string {
	if !s.config.ClientInfo {
		return ""
	}
	return clientInfo(ctx)
}

// holds reports whether session `l.id` is still stored as loaded: alive,
// with the creation time loaded.
func (s *StorageMemory) holds(l *loaded, now int64) bool {
	sh := s.shard(l.id)
	sh.mu.RLock()
	e := sh.m[l.id]
	sh.mu.RUnlock()
	return e != nil && s.alive(e, now) && e.created == l.created.UnixNano()
}

// merge returns the session `cur` (nil: none) as the request's map `m`
// leaves it, what `m` holds (the base of its next write), and whether the
// two are the same (`fast`). If nobody wrote the session since the request loaded it
// (every write installs a new entry), or it is new, the map is the new
// state; else only what the request changed against what it loaded is
// applied to what is stored now: the keys it set or changed, and the keys
// it removed.
func (s *StorageMemory) merge(r *resolved, cur *memoryEntry, m *gmap.StrAnyMap) (data, nextBase map[string]any, fast bool) {
	var loadedEntry *memoryEntry
	if r.kind == loadSame {
		loadedEntry = r.entry
	}
	base := r.sameBase()
	if cur == loadedEntry && (cur != nil || len(base) == 0) {
		m.RLockFunc(func(written map[string]any) { data = maps.Clone(written) })
		return data, data, true
	}
	if cur != nil {
		data = maps.Clone(cur.data)
	} else {
		data = make(map[string]any)
	}
	m.RLockFunc(func(written map[string]any) {
		// The stored session now also holds other requests' keys, which
		// this map does not: its next write must merge again.
		nextBase = maps.Clone(written)
		kept := 0 // keys of base still in the session
		for k, v := range written {
			if old, ok := base[k]; ok {
				kept++
				if sameValue(old, v) {
					continue
				}
			}
			data[k] = v
		}
		if kept < len(base) {
			for k := range base {
				if _, ok := written[k]; !ok {
					delete(data, k)
				}
			}
		}
	})
	return data, nextBase, false
}

// installed is what install did.
type installed struct {
	entry *memoryEntry
	added bool // no entry was stored under the id
	login bool // the session names a user it did not name before
}

// install stores `data` as session `id` in shard `sh`, whose lock the
// caller holds, and moves the session in the user index.
func (s *StorageMemory) install(sh *memoryShard, id string, data map[string]any, created, now int64, ttl time.Duration, client string) installed {
	e := &memoryEntry{data: data, created: created, user: userOf(data, s.config.UserKey), client: client}
	s.touch(e, now, ttl)
	old, exists := sh.m[id]
	if !exists {
		s.count.Add(1)
	}
	sh.m[id] = e
	oldUser := old.userOrEmpty()
	if oldUser != e.user {
		s.unindex(oldUser, id)
		s.index(e.user, id)
	}
	return installed{entry: e, added: !exists, login: e.user != "" && oldUser != e.user}
}

// evict removes sessions while there are more than MaxSessions, starting
// with the shard of the session just added (`added`, which it spares). From
// each shard it removes an expired session if its sample holds one, else the
// one closest to expiry. It takes one shard lock at a time.
func (s *StorageMemory) evict(added string, now int64) {
	i := shardIndex(added)
	for tries := 0; s.count.Load() > int64(s.config.MaxSessions) && tries < 2*memoryShards; tries++ {
		sh := &s.shards[(i+tries)%memoryShards]
		sh.mu.Lock()
		var (
			victim string
			soon   int64
			n      int
		)
		for id, e := range sh.m {
			if id == added {
				continue
			}
			exp := e.expires.Load()
			if victim == "" || exp < soon {
				victim, soon = id, exp
			}
			if n++; n >= evictionSample || exp <= now {
				break
			}
		}
		if victim != "" {
			s.deleteLocked(sh, victim)
		}
		sh.mu.Unlock()
	}
}

// deleteLocked removes session `id` from `sh`, whose lock the caller holds,
// and from the user index.
func (s *StorageMemory) deleteLocked(sh *memoryShard, id string) {
	e, ok := sh.m[id]
	if !ok {
		return
	}
	delete(sh.m, id)
	s.count.Add(-1)
	s.unindex(e.user, id)
}

func (e *memoryEntry) userOrEmpty() string {
	if e == nil {
		return ""
	}
	return e.user
}

// index adds session `id` to the sessions of `user`. Lock order: shard, then
// usersMu.
func (s *StorageMemory) index(user, id string) {
	if user == "" {
		return
	}
	s.usersMu.Lock()
	ids := s.users[user]
	if ids == nil {
		ids = make(map[string]struct{})
		s.users[user] = ids
	}
	ids[id] = struct{}{}
	s.usersMu.Unlock()
}

func (s *StorageMemory) unindex(user, id string) {
	if user == "" {
		return
	}
	s.usersMu.Lock()
	if ids := s.users[user]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(s.users, user)
		}
	}
	s.usersMu.Unlock()
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
			s.touch(e, now, ttl)
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
	s.deleteLocked(sh, sessionId)
	sh.mu.Unlock()
	s.tracker.removed(ctx, sessionId)
	return nil
}

// Count returns the number of sessions held, expired ones not yet swept
// included. It never fails.
func (s *StorageMemory) Count(ctx context.Context) (int, error) {
	return int(s.count.Load()), nil
}

// Range calls `fn` with the handle (see Handle) of every live session until
// it returns false. It copies the ids of one shard (1/64 of the sessions) at
// a time and calls `fn` without holding a lock, so `fn` may use the
// storage. The memory storage holds sessions by id, in the process, where
// nothing is at rest; Range computes the handles as it goes.
func (s *StorageMemory) Range(ctx context.Context, fn func(handle string) bool) error {
	return s.rangeIds(ctx, func(id string) bool { return fn(Handle(id)) })
}

// rangeIds is Range of the sessions' ids.
func (s *StorageMemory) rangeIds(ctx context.Context, fn func(id string) bool) error {
	var ids []string
	for i := range s.shards {
		sh := &s.shards[i]
		now := time.Now().UnixNano()
		ids = ids[:0]
		sh.mu.RLock()
		for id, e := range sh.m {
			if s.alive(e, now) {
				ids = append(ids, id)
			}
		}
		sh.mu.RUnlock()
		for _, id := range ids {
			if !fn(id) {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Destroy deletes session `sessionId`; see RemoveAll.
func (s *StorageMemory) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(adminContext(ctx), sessionId)
}

// DestroyHandle deletes the session whose handle is `handle` (see Handle),
// as Destroy deletes a session by id. A missing session is not an error.
// The memory storage holds sessions by id: it finds the session by hashing
// ids, one shard at a time, the ids of its users' indexes first (with a
// userKey, the sessions pages show), then, if need be, every id.
func (s *StorageMemory) DestroyHandle(ctx context.Context, handle string) error {
	if !IsHandle(handle) {
		return nil
	}
	ctx = adminContext(ctx)
	id, found := s.idOfHandle(handle)
	if !found {
		err := s.rangeIds(ctx, func(candidate string) bool {
			if Handle(candidate) == handle {
				id, found = candidate, true
			}
			return !found
		})
		if err != nil || !found {
			return err
		}
	}
	return s.RemoveAll(ctx, id)
}

// destroyUserHandle deletes the session of user `userId` whose handle is
// `handle`, looking among that user's sessions only.
func (s *StorageMemory) destroyUserHandle(ctx context.Context, userId, handle string) error {
	ids, err := s.userIds(userId)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if Handle(id) == handle {
			return s.RemoveAll(ctx, id)
		}
	}
	return nil
}

// idOfHandle looks for the session whose handle is `handle` among the
// sessions of the user index.
func (s *StorageMemory) idOfHandle(handle string) (string, bool) {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	for _, ids := range s.users {
		for id := range ids {
			if Handle(id) == handle {
				return id, true
			}
		}
	}
	return "", false
}

// DestroyUser deletes every session whose MemoryConfig.UserKey value equals
// `userId` and returns how many it deleted.
func (s *StorageMemory) DestroyUser(ctx context.Context, userId string) (int, error) {
	return s.DestroyUserExcept(ctx, userId, "")
}

// DestroyUserExcept is DestroyUser sparing the session whose handle is
// `keep`.
func (s *StorageMemory) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	ids, err := s.userIds(userId)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if keep != "" && Handle(id) == keep {
			continue
		}
		sh := s.shard(id)
		sh.mu.Lock()
		if e := sh.m[id]; e != nil && e.user == userId {
			s.deleteLocked(sh, id)
			n++
		}
		sh.mu.Unlock()
	}
	return n, nil
}

// userIds returns the ids the user index lists for `userId`.
func (s *StorageMemory) userIds(userId string) ([]string, error) {
	if s.config.UserKey == "" {
		return nil, errNoUserKey("StorageMemory")
	}
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	ids := make([]string, 0, len(s.users[userId]))
	for id := range s.users[userId] {
		ids = append(ids, id)
	}
	return ids, nil
}

// Sessions returns the live sessions of user `userId` (see
// Admin.Sessions), from the user index, without touching them.
func (s *StorageMemory) Sessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	list, err := s.userSessions(ctx, userId)
	return finishSessions(ctx, list), err
}

// userSessions is Sessions, unordered and without Current.
func (s *StorageMemory) userSessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	ids, err := s.userIds(userId)
	if err != nil {
		return nil, err
	}
	ttl, now := s.ttl.get(), time.Now().UnixNano()
	list := make([]SessionInfo, 0, len(ids))
	for _, id := range ids {
		sh := s.shard(id)
		sh.mu.RLock()
		e := sh.m[id]
		sh.mu.RUnlock()
		if e == nil || e.user != userId || !s.alive(e, now) {
			continue
		}
		ip, ua := splitClient(e.client)
		info := SessionInfo{Handle: Handle(id), Created: time.Unix(0, e.created), ClientIP: ip, UserAgent: ua}
		activity(&info, time.Unix(0, e.expires.Load()), ttl, s.config.MaxLifetime, time.Unix(0, e.capped.Load()))
		list = append(list, info)
	}
	return list, nil
}

// Users calls `fn` with each user of the user index that has live
// sessions, and their number (see Admin.Users). It copies the user ids
// first, then counts each user's live sessions under the shard locks.
func (s *StorageMemory) Users(ctx context.Context, fn func(userId string, sessions int) bool) error {
	if s.config.UserKey == "" {
		return errNoUserKey("StorageMemory")
	}
	s.usersMu.Lock()
	users := make([]string, 0, len(s.users))
	for u := range s.users {
		users = append(users, u)
	}
	s.usersMu.Unlock()
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			return err
		}
		ids, _ := s.userIds(u)
		now, n := time.Now().UnixNano(), 0
		for _, id := range ids {
			sh := s.shard(id)
			sh.mu.RLock()
			e := sh.m[id]
			sh.mu.RUnlock()
			if e != nil && e.user == u && s.alive(e, now) {
				n++
			}
		}
		if n > 0 && !fn(u, n) {
			return nil
		}
	}
	return nil
}

// CountUsers returns the number of users Users visits.
func (s *StorageMemory) CountUsers(ctx context.Context) (int, error) {
	return countUsers(ctx, s.Users)
}

// userKeyName returns MemoryConfig.UserKey.
func (s *StorageMemory) userKeyName() string { return s.config.UserKey }

// sweep deletes expired sessions, one shard lock at a time.
func (s *StorageMemory) sweep() {
	now := time.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if !s.alive(e, now) {
				s.deleteLocked(sh, id)
			}
		}
		sh.mu.Unlock()
	}
}

// Close stops the sweeper. It is idempotent; the storage keeps serving
// sessions after Close, without the background sweep.
func (s *StorageMemory) Close(ctx context.Context) error {
	s.sweeper.stop()
	return nil
}
