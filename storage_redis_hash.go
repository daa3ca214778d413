package gfsession

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
)

// hashCreatedField is the reserved hash field holding a session's creation
// time (decimal Unix milliseconds) for MaxLifetime. It starts with a NUL
// byte; a session key that itself starts with NUL is stored with one more
// NUL in front (see hashField), so no session key can ever collide with it.
const hashCreatedField = "\x00created"

// hashField returns the hash field of session key `key`.
func hashField(key string) string {
	if strings.HasPrefix(key, "\x00") {
		return "\x00" + key
	}
	return key
}

// hashKey returns the session key stored in hash field `field`, and false for
// a reserved field.
func hashKey(field string) (string, bool) {
	if !strings.HasPrefix(field, "\x00") {
		return field, true
	}
	if strings.HasPrefix(field, "\x00\x00") {
		return field[1:], true
	}
	return "", false
}

// hashLoadScript loads a whole session and restarts its TTL, in one round
// trip. KEYS[1] is the session key; ARGV: TTL ms, now (Unix ms), max
// lifetime ms (0: none), the created field. A session past its lifetime is
// deleted and reads as empty.
var hashLoadScript = newRedisScript(`
local data = redis.call('HGETALL', KEYS[1])
if #data == 0 then return data end
local ttl = tonumber(ARGV[1])
local max = tonumber(ARGV[3])
if max > 0 then
  local created = tonumber(redis.call('HGET', KEYS[1], ARGV[4]))
  if created then
    local left = created + max - tonumber(ARGV[2])
    if left <= 0 then
      redis.call('DEL', KEYS[1])
      return {}
    end
    if left < ttl then ttl = left end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return data
`)

// hashWriteScript applies a request's delta atomically, with the TTL set in
// the same script as the fields, so a key never exists without a TTL.
// KEYS[1] is the session key; ARGV: TTL ms, now (Unix ms), max lifetime ms
// (0: none), the created field, the number N of fields to set, N field/value
// pairs, then the fields to delete. It returns 1 when the session is
// stored, 0 when it ended up empty (deleted), -1 when it is past its
// lifetime (deleted). Fields go to HSET/HDEL in batches of 256 (unpack has
// a stack limit).
var hashWriteScript = newRedisScript(`
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local max = tonumber(ARGV[3])
local cf = ARGV[4]
local last = 5 + 2 * tonumber(ARGV[5])
for i = 6, last, 512 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 511, last)))
end
for i = last + 1, #ARGV, 512 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 511, #ARGV)))
end
local raw = redis.call('HGET', key, cf)
local n = redis.call('HLEN', key)
if raw then n = n - 1 end
if n <= 0 then
  redis.call('DEL', key)
  return 0
end
local created = raw and tonumber(raw)
if not created then
  redis.call('HSET', key, cf, ARGV[2])
  created = tonumber(ARGV[2])
end
if max > 0 then
  local left = created + max - tonumber(ARGV[2])
  if left <= 0 then
    redis.call('DEL', key)
    return -1
  end
  if left < ttl then ttl = left end
end
redis.call('PEXPIRE', key, ttl)
return 1
`)

// StorageRedisHash keeps each session as one Redis hash, one field per
// session key, each value in the envelope's single-value form (keeping its
// Go type, optionally sealed with CryptoKeys). It works on standalone Redis,
// Sentinel and Cluster (one key per command, Lua scripts with that one key)
// and needs Redis 6.0 or newer.
//
// Round trips: GetSession loads the whole hash and restarts its TTL in one
// script call (EVALSHA, with an EVAL fallback the first time a server sees
// the script), so a request that only reads costs one round trip however
// many Get calls it makes (UpdateTTL is a no-op). SetSession writes only
// what the request changed: the keys it set or changed (HSET) and the keys
// it removed (HDEL), with the TTL (PEXPIRE), in one script call; a session
// that ends up empty is deleted. A request that changed nothing costs no
// write at all, and a new session that is never written creates no key.
// Every key gets its TTL in the same atomic script that writes its fields:
// a crash never leaves a key without a TTL. TTLs are in milliseconds.
//
// Concurrent requests of one session that write different keys all
// survive (per-key merge); of two requests writing the same key, the last
// one wins for that key.
//
// The creation time for MaxLifetime is kept in the reserved field
// "\x00created" (a session key starting with a NUL byte is stored with one
// more NUL in front, so it cannot collide).
//
// It reads hashes written by gf's gsession.StorageRedisHashTable under the
// same prefix. gf stores every value as its string form, so such values
// come back as strings (42 reads as "42"); they are rewritten in this
// storage's format when a request changes them. See docs/migration.md.
//
// A field that cannot be decoded (corrupt, sealed with an unknown key) is
// dropped from the loaded session and logged through gf's logger; the other
// keys still load.
//
// It implements Admin as StorageRedis does (see there): Count and Range SCAN
// the hashes under the prefix, and DestroyUser reads the user index kept
// with RedisConfig.UserKey, checking each session's user field.
//
// The storage does not close a client passed to NewStorageRedisHash; it
// closes a client it created itself from the config map (Close).
type StorageRedisHash struct {
	gsession.StorageBase
	r *redisStore
}

var _ Admin = (*StorageRedisHash)(nil)

// NewStorageRedisHash creates a storage on the gredis client `redis`, e.g.
// g.Redis() or gredis.New(config). It returns an error for a nil client or a
// bad `config`. The caller keeps ownership of `redis`.
func NewStorageRedisHash(redis *gredis.Redis, config ...RedisConfig) (*StorageRedisHash, error) {
	r, err := newRedisStore(TypeRedisHash, redis, config)
	if err != nil {
		return nil, err
	}
	return &StorageRedisHash{r: r}, nil
}

func init() {
	Register(TypeRedisHash, newStorageRedisHashFromConfig)
}

func newStorageRedisHashFromConfig(ctx context.Context, m map[string]any) (gsession.Storage, error) {
	client, config, owned, err := redisFromConfig(ctx, m)
	if err != nil {
		return nil, err
	}
	s, err := NewStorageRedisHash(client, config)
	if err != nil {
		if owned {
			_ = client.Close(ctx)
		}
		return nil, err
	}
	s.r.owned = owned
	return s, nil
}

// New returns a new random session id (see NewSessionId). It sends nothing to
// Redis.
func (s *StorageRedisHash) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession loads the whole session and restarts its idle TTL at `ttl`
// (never beyond MaxLifetime), in one round trip. It returns nil, and no
// error, when the session does not exist, has expired, has outlived
// MaxLifetime (its key is then deleted), holds no readable key, or
// `sessionId` is not a valid id (nothing is sent to Redis). Redis errors are
// returned.
func (s *StorageRedisHash) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	r := s.r
	v, err := r.eval(ctx, hashLoadScript, sessionId,
		millis(ttl), time.Now().UnixMilli(), r.lifetimeMillis(), hashCreatedField)
	if err != nil {
		return nil, err
	}
	list := v.Strings()
	if len(list) < 2 {
		return nil, nil
	}
	var (
		data = make(map[string]any, len(list)/2)
		base = make(map[string]any, len(list)/2)
	)
	for i := 0; i+1 < len(list); i += 2 {
		key, ok := hashKey(list[i])
		if !ok {
			continue
		}
		stored := []byte(list[i+1])
		value, err := r.env.decodeValue(sessionId, key, stored)
		if err != nil {
			g.Log().Warningf(ctx, `gfsession: %s: session %q: key %q dropped: %v`, r.backend, sessionId, key, err)
			continue
		}
		data[key] = value
		base[key] = value
		if !immutableValue(value) {
			// The handler may change a map or slice in place and set it
			// again: keep an independent copy to tell that it changed.
			base[key], _ = r.env.decodeValue(sessionId, key, stored)
		}
	}
	if len(data) == 0 {
		return nil, nil
	}
	m := gmap.NewStrAnyMapFrom(data, true)
	r.tracker.track(m, sessionId, base, nil)
	return m, nil
}

// immutableValue reports whether `v` cannot be changed in place.
func immutableValue(v any) bool {
	switch v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, time.Time:
		return true
	}
	return false
}

// SetSession writes what the request changed in `sessionData` since
// GetSession loaded it: keys set or changed are written, keys removed are
// deleted, keys left alone keep whatever a concurrent request stored
// meanwhile; the TTL restarts at `ttl` (never beyond MaxLifetime). All of it
// is one atomic script call; nothing is sent when nothing changed. A session
// that ends up empty is deleted. A map that GetSession did not load (a new
// session, RegenerateId) is written whole, key by key. An invalid
// `sessionId` is an error and sends nothing.
//
// With a UserKey, a write that changes the session's user key (from what
// GetSession loaded; for a map it did not load, from none) also updates the
// user index, one more round trip: on login the index entry is added before
// the session is written, on logout or deletion it is removed after.
func (s *StorageRedisHash) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return errInvalidId(sessionId)
	}
	r := s.r
	var (
		base    map[string]any
		written = sessionData.Map()
		set     []any
		del     []any
		newBase = make(map[string]any, len(written))
	)
	if l, ok := r.tracker.lookup(sessionData, sessionId); ok {
		base = l.base
	}
	for k, v := range written {
		if old, ok := base[k]; ok && sameValue(old, v) {
			newBase[k] = old
			continue
		}
		stored, err := r.env.encodeValue(sessionId, k, v)
		if err != nil {
			return err
		}
		set = append(set, hashField(k), stored)
		newBase[k] = v
		if !immutableValue(v) {
			if c, err := r.env.decodeValue(sessionId, k, stored); err == nil {
				newBase[k] = c
			}
		}
	}
	for k := range base {
		if _, ok := written[k]; !ok {
			del = append(del, hashField(k))
		}
	}
	if len(set) == 0 && len(del) == 0 {
		// Nothing changed; GetSession already restarted the TTL.
		return nil
	}
	args := make([]any, 0, 5+len(set)+len(del))
	args = append(args, millis(ttl), time.Now().UnixMilli(), r.lifetimeMillis(), hashCreatedField, len(set)/2)
	args = append(args, set...)
	args = append(args, del...)
	var (
		from   = userOf(base, r.userKey)
		to     = userOf(written, r.userKey)
		stored int
	)
	err := r.reindexUser(ctx, sessionId, from, to, func() error {
		v, err := r.eval(ctx, hashWriteScript, sessionId, args...)
		if err == nil {
			stored = v.Int()
		}
		return err
	})
	if err != nil {
		return err
	}
	if stored != 1 && from == to {
		// Deleted: empty, or past its lifetime.
		r.unindexUser(ctx, from, sessionId)
	}
	r.tracker.retrack(sessionData, sessionId, newBase, nil)
	return nil
}

// UpdateTTL does nothing and returns nil: GetSession already restarted the
// TTL when it loaded the session (gf calls UpdateTTL only for a session it
// loaded and did not change), which saves a round trip per request.
func (s *StorageRedisHash) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	return nil
}

// RemoveAll deletes the session (one DEL). A missing session or an invalid
// id is not an error; an invalid id sends nothing.
func (s *StorageRedisHash) RemoveAll(ctx context.Context, sessionId string) error {
	return s.r.removeAll(ctx, sessionId)
}

// Close closes the Redis client if the storage created it (from inline
// config-map fields); a client passed to NewStorageRedisHash or taken from a
// gf redis group is left open. It is idempotent.
func (s *StorageRedisHash) Close(ctx context.Context) error {
	return s.r.close(ctx)
}

// Count returns the number of sessions under the prefix: the hash keys whose
// name is the prefix followed by a valid session id (see Range). It scans
// the keyspace, one SCAN per redisScanCount keys on every master: its cost
// grows with the size of the database, not only with the sessions.
func (s *StorageRedisHash) Count(ctx context.Context) (int, error) {
	return s.r.count(ctx, "hash")
}

// Range calls `fn` with the id of every session under the prefix until `fn`
// returns false or `ctx` is done (its error is then returned). It runs SCAN
// MATCH prefix* TYPE hash, never KEYS, on every master of a Cluster, and
// holds one batch of keys at a time; `fn` may use the storage. Hashes of
// gf's own StorageRedisHashTable under the same prefix are sessions too
// (this storage reads them); any other hash there whose name after the
// prefix is a valid session id is taken for one, which is why the prefix
// should be the sessions' own (with NoPrefix: the whole database). User
// indexes are skipped. It needs gf's go-redis adapter (see redisStore.scan).
func (s *StorageRedisHash) Range(ctx context.Context, fn func(sessionId string) bool) error {
	return s.r.scan(ctx, "hash", fn)
}

// Destroy deletes session `sessionId`; see RemoveAll. It does not read the
// session first, so its user index entry, if any, stays until DestroyUser
// or the user's next login drops it as stale.
func (s *StorageRedisHash) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(ctx, sessionId)
}

// DestroyUser deletes every session whose RedisConfig.UserKey value equals
// `userId` and returns how many it deleted. It reads the user's index (one
// script call), reads the user field of each session listed (HMGET) and deletes
// the session only if the field still holds that user, atomically (a script
// deleting the key only if the field is unchanged); entries found stale are
// not counted. The read entries are then removed from the index. It costs
// about two round trips per indexed session. Without a UserKey it fails
// with CodeInvalidOperation.
func (s *StorageRedisHash) DestroyUser(ctx context.Context, userId string) (int, error) {
	r := s.r
	field := hashField(r.userKey)
	return r.destroyUser(ctx, userId, func(id string) (bool, error) {
		for try := 0; try < redisCASTries; try++ {
			v, err := r.do(ctx, id, "HMGET", r.key(id), field, hashCreatedField)
			if err != nil {
				return false, err
			}
			got := v.Strings()
			if len(got) != 2 || got[0] == "" {
				return false, nil
			}
			user, err := r.env.decodeValue(id, r.userKey, []byte(got[0]))
			if err != nil || userOf(map[string]any{r.userKey: user}, r.userKey) != userId {
				return false, nil
			}
			res, err := r.eval(ctx, hashDeleteIfScript, id, field, got[0])
			if err != nil {
				return false, err
			}
			if res.Int() == 1 {
				created, err := strconv.ParseInt(got[1], 10, 64)
				live := err != nil || r.maxLifetime <= 0 ||
					time.UnixMilli(created).Add(r.maxLifetime).After(time.Now())
				return live, nil
			}
		}
		return false, r.errKeepsChanging(id)
	})
}

// hashDeleteIfScript deletes KEYS[1] if its field ARGV[1] holds ARGV[2],
// returning 1, else 0.
var hashDeleteIfScript = newRedisScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// lifetimeMillis returns MaxLifetime for the scripts: whole milliseconds,
// rounded up, or 0 for none.
func (r *redisStore) lifetimeMillis() int64 {
	if r.maxLifetime <= 0 {
		return 0
	}
	return millis(r.maxLifetime)
}
