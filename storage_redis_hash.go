package gfsession

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/redis/go-redis/v9"
)

// hashCreatedField is the reserved hash field holding a session's creation
// time (decimal Unix milliseconds) for MaxLifetime. It starts with a NUL
// byte; a session key that itself starts with NUL is stored with one more
// NUL in front (see hashField), so no session key can ever collide with it.
const hashCreatedField = "\x00created"

// hashManifestField is the reserved hash field that, with cryptoKeys, holds
// the session's sealed manifest: the creation time and, for every session
// key's field, the authentication tag of its sealed value (see
// sealManifest). A session whose fields are not exactly those the manifest
// lists reads as no session.
const hashManifestField = "\x00manifest"

// hashUserIndexField is the reserved hash field that, with a UserKey, holds
// the score of the session's entry in its user's index, written with the
// user by the login that made the entry. A logout or switch of user removes
// the entry only if it still has that score: an entry a concurrent login of
// the same user made meanwhile (a higher score) stays, so the index never
// misses a session stored under the user.
const hashUserIndexField = "\x00uidx"

// hashClientField is the reserved hash field that, with ClientInfo, holds
// the client IP and User-Agent of the request that last wrote the session,
// as a value sealed for the session and this field name when sealed.
const hashClientField = "\x00client"

// hashCASTries is how often a sealed write is tried again when concurrent
// writes of the same session changed its manifest in between (see
// writeSealed). Each failed try means another write succeeded.
const hashCASTries = 64

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

// hashConfirmLua prefixes the write scripts. With a second key, the index
// of the user a login stores (only where both keys can be used in one
// script: a client of one server, or Sentinel), the last two ARGV are the
// session's index member and the index TTL ms, and confirm() adds the
// member to the index, scored as the hash's hashUserIndexField, if it has
// no entry there (see StorageRedisHash.confirmUser). nargs is the number of
// ARGV before those two. batch(cmd, key, from, to) sends ARGV[from..to] to
// `cmd` (HSET, HDEL) in batches of 512, within Lua's unpack limit.
const hashConfirmLua = `
local nargs = #ARGV
if #KEYS > 1 then nargs = nargs - 2 end
local function batch(cmd, key, from, to)
  for i = from, to, 512 do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + 511, to)))
  end
end
local function confirm()
  if #KEYS < 2 then return end
  local member, ttl = ARGV[#ARGV - 1], tonumber(ARGV[#ARGV])
  local score = redis.call('HGET', KEYS[1], string.char(0) .. 'uidx')
  if not score or redis.call('ZSCORE', KEYS[2], member) then return end
  redis.call('ZADD', KEYS[2], score, member)
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
end
`

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
// (0: none), the created field, the number N of fields to set, "1" if the
// session must exist (it was loaded) or "0", the creation time (Unix ms) of
// a session that has none yet, N field/value pairs, then the fields to
// delete. It returns {1, the creation time the hash holds} when the
// session is stored, 0 when it ended up empty (deleted), -1 when it is past
// its lifetime (deleted), -2 when it must exist and does not (nothing
// written). Reserved fields
// (hashCreatedField, hashUserIndexField) do not count as session keys.
// Fields go to HSET/HDEL in batches of 256 (unpack has a stack limit).
var hashWriteScript = newRedisScript(hashConfirmLua + `
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local max = tonumber(ARGV[3])
local cf = ARGV[4]
if ARGV[6] == '-' then
  if redis.call('EXISTS', key) == 0 then return -2 end
elseif ARGV[6] ~= '' then
  if redis.call('HGET', key, cf) ~= ARGV[6] then return -2 end
end
local last = 7 + 2 * tonumber(ARGV[5])
batch('HSET', key, 8, last)
batch('HDEL', key, last + 1, nargs)
local raw = redis.call('HGET', key, cf)
local n = redis.call('HLEN', key)
if raw then n = n - 1 end
if redis.call('HGET', key, string.char(0) .. 'uidx') then n = n - 1 end
if redis.call('HGET', key, string.char(0) .. 'client') then n = n - 1 end
if n <= 0 then
  redis.call('DEL', key)
  return 0
end
local created = raw and tonumber(raw)
if not created then
  redis.call('HSET', key, cf, ARGV[7])
  created = tonumber(ARGV[7])
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
confirm()
return {1, created}
`)

// hashUpdateScript is hashWriteScript for the common write of a session
// the request loaded: keys set, none removed, the creation time known. It
// checks the creation time, sets the fields and restarts the TTL, which the
// client has already capped by what is left of MaxLifetime (it knows the
// creation time): three commands, where hashWriteScript runs five. KEYS[1]
// is the session key; ARGV: the created field, the creation time (Unix ms)
// loaded, the TTL ms, then field/value pairs. It returns 1 when it wrote,
// -2 when the session is gone or another one (nothing written).
var hashUpdateScript = newRedisScript(hashConfirmLua + `
local key = KEYS[1]
if redis.call('HGET', key, ARGV[1]) ~= ARGV[2] then return -2 end
batch('HSET', key, 4, nargs)
redis.call('PEXPIRE', key, ARGV[3])
confirm()
return 1
`)

// StorageRedisHash keeps each session as one Redis hash, one field per
// session key, each value in the envelope's single-value form (keeping its
// Go type, optionally sealed with CryptoKeys). It works on standalone Redis,
// Sentinel and Cluster (every pipeline, transaction and script touches one
// key) and needs Redis 6.0 or newer.
//
// Round trips: GetSession loads the whole hash and restarts its TTL in one
// round trip (a pipeline of HGETALL and PEXPIRE; HGETALL alone when this
// process restarted the TTL less than min(ttl/64, 1s) ago, as StorageRedis
// does), so a request that only reads costs one round trip however many
// Get calls it makes (UpdateTTL is a no-op). SetSession writes only what
// the request changed: the keys it set or changed (HSET) and the keys it removed (HDEL), with the TTL
// (PEXPIRE), in one Lua script that first checks the session is still the
// one the request loaded and deletes it when it ends up empty (the first
// write of a new session is one MULTI/EXEC transaction). A
// request that changed nothing costs no write at all, and a new session
// that is never written creates no key. Every key gets its TTL in the same
// transaction or script that writes its fields: a crash never leaves a key
// without a TTL. TTLs are in milliseconds. Pipelines and transactions need
// gf's go-redis adapter (contrib/nosql/redis, what g.Redis and gredis.New
// make); through another gredis adapter, loads and writes are one Lua
// script call each (EVALSHA, with an EVAL fallback the first time a server
// sees a script), still one round trip.
//
// Concurrent requests of one session that write different keys all
// survive (per-key merge); of two requests writing the same key, the last
// one wins for that key.
//
// The creation time for MaxLifetime is kept in the reserved field
// "\x00created" (a session key starting with a NUL byte is stored with one
// more NUL in front, so it cannot collide).
//
// With CryptoKeys a session is authenticated as a whole. Each value is
// sealed for its session id, key name and creation time, and the reserved
// field "\x00manifest" holds, sealed for the id and the creation time, the
// list of the session's fields with the authentication tag of each value.
// A session whose manifest does not open, or whose fields are not exactly
// the ones listed with those values, reads as no session (logged): an
// edited, added, deleted, swapped or copied field, an edited creation time
// (extending MaxLifetime) and fields of another session are all detected.
// What cannot be detected is a rollback of the whole hash to a copy taken
// earlier from the same session. A write stores the new manifest only if
// the stored one is still the one it computed from, in the same script as
// the fields (see writeSealed): a write that races another write of the
// session costs one more round trip per write that came in between.
//
// It reads hashes written by gf's gsession.StorageRedisHashTable under the
// same prefix. gf stores every value as its string form, so such values
// come back as strings (42 reads as "42"); they are rewritten in this
// storage's format when a request changes them. See docs/migration.md.
//
// A session with a field that cannot be decoded (corrupt, sealed with an
// unknown key, tampered with) reads as no session, logged through gf's
// logger, and is deleted: the other keys are not loaded without it.
//
// It implements Admin as StorageRedis does (see there): Count and Range SCAN
// the hashes under the prefix, and DestroyUser reads the user index kept
// with RedisConfig.UserKey, checking each session's user field.
//
// The storage does not close a client passed to NewStorageRedisHash; it
// closes a client it created itself from the config map (Close).
type StorageRedisHash struct {
	redisShared
	limit *sessionLimit // maxSessionsPerUser; nil for none
}

var _ Admin = (*StorageRedisHash)(nil)

// NewStorageRedisHash creates a storage on the gredis client `redis`, e.g.
// g.Redis() or gredis.New(config). It returns an error for a nil client or a
// bad `config`. The caller keeps ownership of `redis`. Give the client a
// readTimeout and writeTimeout (see NewStorageRedis).
func NewStorageRedisHash(redis *gredis.Redis, config ...RedisConfig) (*StorageRedisHash, error) {
	return newRedisStorage(TypeRedisHash, redis, config, newStorageRedisHashOn)
}

// newStorageRedisHashOn returns the StorageRedisHash of `r`.
func newStorageRedisHashOn(r *redisStore) *StorageRedisHash {
	s := &StorageRedisHash{redisShared: redisShared{r: r, keyType: "hash"}}
	s.probeOf = s.probe
	s.limit = r.newLimit(s.sessionsOver)
	return s
}

// GetSession loads the whole session and restarts its idle TTL at `ttl`
// (never beyond MaxLifetime), in one round trip. It returns nil, and no
// error, when the session does not exist, has expired, has outlived
// MaxLifetime (its key is then deleted), holds a field that does not
// decode (logged; the hash is deleted unless a write changed it since), is
// not a hash (logged; a session of the key-value storage or of gf's there is
// deleted, any other key left alone), or `sessionId` is not a valid id
// (nothing is sent to Redis). Redis errors are returned.
//
// Through gf's go-redis adapter the round trip is a pipeline of HGETALL and
// PEXPIRE, or HGETALL alone when this process restarted the TTL less than
// min(`ttl`/64, 1s) ago; in the last `ttl` of a session's MaxLifetime a
// second PEXPIRE caps the TTL a restart set at what is left. Through
// another adapter it is one Lua script, which restarts the TTL every time.
//
// The session is stored under its handle (see Handle). When the handle's
// key is missing, a session gf's StorageRedisHashTable left under the id
// itself is moved to the handle's key (see moveRaw) and loaded from there:
// a miss costs one more round trip.
func (s *StorageRedisHash) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	s.r.ttl.note(ttl)
	return loadByHandle(sessionId,
		func(h string) (*gmap.StrAnyMap, bool, error) { return s.getSession(ctx, h, ttl) },
		func(h string) (bool, error) { return s.r.moveRaw(ctx, sessionId, h, "hash") })
}

// getSession is GetSession of the session stored as `sessionId` (its
// handle); `found` reports whether there was a key.
func (s *StorageRedisHash) getSession(ctx context.Context, sessionId string, ttl time.Duration) (m *gmap.StrAnyMap, found bool, err error) {
	r := s.r
	fields, created, err := s.load(ctx, sessionId, ttl)
	if isWrongType(err) {
		// Not a hash. If it is a session of the key-value storage under the
		// same prefix, delete it: the load restarted its TTL and every
		// write would fail on it, so the id would never work again. The
		// script checks and deletes in one step, so it cannot delete a
		// hash another request wrote meanwhile; other keys are left alone.
		logDropped(ctx, r.backend, sessionId, err)
		if _, err := r.eval(ctx, hashDropStringScript, sessionId, envelopeMagic); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	if err != nil || len(fields) == 0 {
		return nil, false, err
	}
	data, base, meta, stale, err := s.decodeFields(sessionId, fields, created)
	if err != nil {
		// One unreadable field makes the whole session unreadable: loading
		// the rest would hand the request a session that silently lacks a
		// key (a role, a user). The hash is deleted, unless a write changed
		// it since, so that the next write starts a fresh session.
		logDropped(ctx, r.backend, sessionId, err)
		return nil, true, s.dropAsRead(ctx, sessionId, fields)
	}
	if len(data) == 0 {
		return nil, true, nil
	}
	if stale {
		meta = s.reseal(ctx, sessionId, data, meta, ttl)
	}
	return r.tracker.handOut(data, loaded{id: sessionId, created: meta.created, user: userOf(base, r.userKey), base: base, seal: meta.hashSeal}), true, nil
}

// hashLoaded is a session hash as a request loaded (or last wrote) it.
type hashLoaded struct {
	created time.Time
	hashSeal
}

// hashSeal is what the tracker keeps of a session hash, besides its
// creation time, user and values, for the next write of the request's map
// (loaded.seal).
type hashSeal struct {
	// With cryptoKeys: the tag of the manifest (its last 16 bytes), which a
	// write checks is still the stored one, and its entries (field -> tag
	// of the field's value), the fields the hash holds.
	tag     string
	entries map[string]string
	// uidx is the score of the session's entry in the index of its user
	// (hashUserIndexField), "" when unknown.
	uidx string
}

// decodeFields decodes the hash `fields` of session `id`, created at
// `created`: the session's data, an independent copy of it as loaded
// (`base`, for SetSession to tell what changed), what the tracker keeps of
// it, and whether any of it is sealed with an old crypto key. It fails if
// any field does not decode. With cryptoKeys it also fails unless the
// session is authentic as a whole: a manifest sealed for this id and
// creation time lists exactly the hash's fields, each with the tag of its
// value, and every value opens for this id, key name and creation time.
func (s *StorageRedisHash) decodeFields(id string, fields map[string]string, created time.Time) (data, base map[string]any, meta hashLoaded, stale bool, err error) {
	r := s.r
	meta.created = created
	meta.uidx = fields[hashUserIndexField]
	if r.env.keys != nil {
		if meta.entries, err = s.checkManifest(id, fields, created); err != nil {
			return nil, nil, meta, false, err
		}
		manifest := fields[hashManifestField]
		meta.tag = manifestTag(manifest)
		stale = r.env.keys.stale(manifest[2:])
	}
	data = make(map[string]any, len(fields))
	base = make(map[string]any, len(fields))
	for field, raw := range fields {
		key, ok := hashKey(field)
		if !ok {
			continue
		}
		value, err := s.decodeValue(id, key, created, raw)
		if err != nil {
			return nil, nil, meta, false, gerror.Wrapf(err, `key %q`, key)
		}
		if r.env.staleValueSeal(raw) {
			stale = true
		}
		data[key] = value
		base[key] = value
		if !immutableValue(value) {
			// The handler may change a map or slice in place and set it
			// again: keep an independent copy to tell that it changed.
			base[key], _ = s.decodeValue(id, key, created, raw)
		}
	}
	return data, base, meta, stale, nil
}

// encodeValue returns the stored form of value `v` of key `key` of session
// `id` created at `created`. Sealed, it opens only for that id, key name
// and creation time.
func (s *StorageRedisHash) encodeValue(id, key string, created time.Time, v any) ([]byte, error) {
	if s.r.env.keys == nil {
		return s.r.env.encodeValue(id, key, v)
	}
	return s.r.env.encodeValue(id, sealName(key, created), v)
}

// decodeValue reverses encodeValue.
func (s *StorageRedisHash) decodeValue(id, key string, created time.Time, raw string) (any, error) {
	if s.r.env.keys == nil {
		return s.r.env.decodeValue(id, key, raw)
	}
	return s.r.env.decodeValue(id, sealName(key, created), raw)
}

// tagSize is the size of an AES-GCM authentication tag, the last bytes of
// every sealed value.
const tagSize = 16

// hashDropScript deletes KEYS[1] if it still holds exactly the fields and
// values given as ARGV field/value pairs, returning 1, else 0.
var hashDropScript = newRedisScript(`
if redis.call('HLEN', KEYS[1]) * 2 ~= #ARGV then return 0 end
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
return redis.call('DEL', KEYS[1])
`)

// dropAsRead deletes session `id`'s hash, read as `fields` and found
// unreadable or past MaxLifetime, if it still holds exactly those fields: a
// write that came in between is not deleted with it (if it is no better,
// the next load deletes it). Only Redis errors are returned.
func (s *StorageRedisHash) dropAsRead(ctx context.Context, id string, fields map[string]string) error {
	args := make([]any, 0, 2*len(fields))
	for f, v := range fields {
		args = append(args, f, v)
	}
	_, err := s.r.eval(ctx, hashDropScript, id, args...)
	return err
}

// reseal stores session `id`, loaded as `data` and `meta` with some of it
// (fields or the manifest) sealed with an old crypto key, sealed with the
// first key, once: a session that is only read would keep the old key
// needed for as long as it lives. It is a sealed write of every field
// (writeSealed) that applies only if no write came in between; its TTL is
// `ttl`, the one the load set. It returns what the tracker keeps of the
// session now: `meta`, or the session as resealed. A failure only logs: the
// read succeeded.
func (s *StorageRedisHash) reseal(ctx context.Context, id string, data map[string]any, meta hashLoaded, ttl time.Duration) hashLoaded {
	r := s.r
	d := hashDelta{ttl: ttl, created: meta.created, stamp: meta.created, mustExist: true}
	for k, v := range data {
		stored, err := s.encodeValue(id, k, meta.created, v)
		if err != nil {
			g.Log().Warningf(ctx, `gfsession: %s: sealing session %q with the new crypto key: %v`, r.backend, shortId(id), err)
			return meta
		}
		d.set = append(d.set, hashField(k), stored)
	}
	result, now, err := s.writeSealed(ctx, id, d, nil, meta, true)
	if err != nil {
		g.Log().Warningf(ctx, `gfsession: %s: sealing session %q with the new crypto key: %v`, r.backend, shortId(id), err)
	}
	if err != nil || result != hashStored {
		return meta
	}
	now.uidx = meta.uidx
	return now
}

// load returns the fields of session `id`'s hash, reserved ones included,
// and its creation time (zero when the hash has none, as gf's hashes), and
// restarts the hash's TTL at `ttl`, capped by MaxLifetime. It returns no
// fields for a missing hash and for one past MaxLifetime, which it deletes.
func (s *StorageRedisHash) load(ctx context.Context, id string, ttl time.Duration) (map[string]string, time.Time, error) {
	r := s.r
	if r.raw == nil {
		return s.loadScript(ctx, id, ttl)
	}
	key := r.key(id)
	now := time.Now()
	restart := r.refreshes.due(id, ttl, now)
	var (
		all *redis.MapStringStringCmd
		err error
	)
	if restart {
		_, err = r.raw.Pipelined(ctx, func(p redis.Pipeliner) error {
			all = p.HGetAll(ctx, key)
			p.PExpire(ctx, key, pxDuration(ttl))
			return nil
		})
	} else {
		all = r.raw.HGetAll(ctx, key)
		err = all.Err()
	}
	if err != nil {
		return nil, time.Time{}, r.wrap(err, "HGETALL", id)
	}
	fields := all.Val()
	if len(fields) == 0 {
		return nil, time.Time{}, nil
	}
	if restart {
		r.refreshes.restarted(id, ttl, now, time.Now())
	}
	created := hashCreated(fields)
	if r.maxLifetime <= 0 || created.IsZero() {
		return fields, created, nil
	}
	switch left := lifetimeLeft(created, r.maxLifetime, ttl, time.Now()); {
	case left <= 0:
		// Delete it, or reads of the dead session would keep sliding its
		// TTL; only if it is still what was read (see dropAsRead).
		if err := s.dropAsRead(ctx, id, fields); err != nil {
			return nil, time.Time{}, err
		}
		return nil, time.Time{}, nil
	case left < ttl && restart:
		// Without a restart, the TTL is still what the last restart, which
		// capped it too, left.
		if _, err := r.do(ctx, id, "PEXPIRE", key, millis(left)); err != nil {
			return nil, time.Time{}, err
		}
	}
	return fields, created, nil
}

// loadScript is load through an adapter other than gf's go-redis one: one
// script call (hashLoadScript), which also enforces MaxLifetime.
func (s *StorageRedisHash) loadScript(ctx context.Context, id string, ttl time.Duration) (map[string]string, time.Time, error) {
	r := s.r
	v, err := r.eval(ctx, hashLoadScript, id,
		millis(ttl), time.Now().UnixMilli(), r.lifetimeMillis(), hashCreatedField)
	if err != nil {
		return nil, time.Time{}, err
	}
	list := v.Strings()
	if len(list) < 2 {
		return nil, time.Time{}, nil
	}
	fields := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		fields[list[i]] = list[i+1]
	}
	return fields, hashCreated(fields), nil
}

// hashCreated returns the creation time kept in the reserved field of the
// hash `fields`, or the zero time when there is none or it is unreadable.
func hashCreated(fields map[string]string) time.Time {
	ms, err := strconv.ParseInt(fields[hashCreatedField], 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
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
// is one atomic round trip; nothing is sent when nothing changed. A session
// that ends up empty is deleted. A map that GetSession did not load (a new
// session, RegenerateId) is written whole, key by key. An invalid
// `sessionId` is an error and sends nothing.
//
// It follows the package's write rules (see Writes in the package
// documentation). A write of a session this request loaded is one Lua
// script, which writes only if the hash still has the creation time that
// was loaded. Through gf's go-redis adapter the first write of a new
// session is one MULTI/EXEC transaction of HSET, HSETNX of the creation
// time and PEXPIRE; through another adapter it is the script too.
//
// With a UserKey, a write that stores a value of the user key is a login,
// even of the user loaded (a session the request cleared and started anew,
// a value stored again in another form): it indexes the user, one more
// round trip, before the session is written, and the write's script then
// checks the entry is still there and restores it if a concurrent
// DestroyUser removed it (on a Cluster or through another gredis adapter,
// one more round trip after the write). A logout or deletion removes the
// entry after the write, and only if it is still the entry of the login
// the request loaded (see hashUserIndexField). A write that leaves the
// user key alone sends no index command, so the index follows what is
// stored: a concurrent logout or switch of user stands, with its index
// update.
func (s *StorageRedisHash) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite(s.r.backend, sessionId, sessionData); err != nil {
		return err
	}
	s.r.ttl.note(ttl)
	return s.setSession(ctx, Handle(sessionId), sessionData, ttl)
}

// setSession is SetSession of the session stored as `sessionId` (its
// handle).
func (s *StorageRedisHash) setSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	r := s.r.tracker.resolve(ctx, sessionData, sessionId)
	if ok, err := s.r.tracker.mayWrite(ctx, s.r.backend, &r, sessionId, s.holds); !ok {
		return err
	}
	meta := hashLoaded{created: r.created, hashSeal: r.seal}
	d := hashDelta{ttl: ttl, created: r.keptCreated(), mustExist: r.kind == loadSame}
	d.stamp = d.created
	if d.stamp.IsZero() {
		d.stamp = time.Now()
	}
	written := sessionData.Map()
	newBase, err := s.diff(sessionId, &d, written, r.sameBase())
	if err != nil {
		return err
	}
	from, to := r.fromUser(), userOf(written, s.r.userKey)
	if len(d.set) == 0 && len(d.del) == 0 {
		// Nothing changed (GetSession already restarted the TTL), or the
		// request deleted its session with RemoveAll and wrote nothing.
		if from != "" && len(written) == 0 {
			s.unindexUser(ctx, from, sessionId, meta.uidx)
		}
		return nil
	}
	login := to != "" && s.setsUser(d.set)
	uidx, err := s.moveUser(ctx, sessionId, &d, meta.uidx, login, from, to)
	if err != nil {
		return err
	}
	if client := clientInfo(ctx); s.r.clientInfo && client != "" {
		v, err := s.r.env.encodeValue(sessionId, hashClientField, client)
		if err != nil {
			return err
		}
		d.set = append(d.set, hashClientField, v)
	}
	var (
		result hashWrite
		now    hashLoaded
		start  = time.Now()
	)
	if s.r.env.keys != nil {
		result, now, err = s.writeSealed(ctx, sessionId, d, written, meta, false)
	} else {
		// The creation time the hash holds after the write, which may be
		// one it had already (kept by HSETNX): the next write of this map
		// checks it.
		result, now.created, err = s.write(ctx, sessionId, d)
	}
	if err != nil {
		// The entry made for `to`, if any, stays behind: DestroyUser checks
		// the session before deleting it.
		return err
	}
	if result == hashStored {
		s.r.refreshes.restarted(sessionId, d.ttl, start, time.Now()) // the write set the TTL
	}
	now.uidx = uidx
	return s.written(ctx, sessionId, &r, result, now, newBase, meta.uidx, login, &d, from, to)
}

// holds reports whether the hash of session `l.id` still has the creation
// time loaded, or for a hash in gf's format, which has none, still exists.
func (s *StorageRedisHash) holds(ctx context.Context, l *loaded) (bool, error) {
	r := s.r
	if l.created.IsZero() {
		v, err := r.do(ctx, l.id, "EXISTS", r.key(l.id))
		return err == nil && v.Int() == 1, err
	}
	v, err := r.do(ctx, l.id, "HGET", r.key(l.id), hashCreatedField)
	if err != nil {
		return false, err
	}
	return v.String() == strconv.FormatInt(l.created.UnixMilli(), 10), nil
}

// diff adds to `d` what the request's map, `written`, changed against what
// it loaded, `base` (nil: every key is new): the fields to set, encoded,
// and the fields to delete. It returns what the map holds from now on (the
// base of its next write), with the values this write stores as decoded
// copies, so that the request changing them later is seen.
func (s *StorageRedisHash) diff(id string, d *hashDelta, written, base map[string]any) (map[string]any, error) {
	newBase := make(map[string]any, len(written))
	for k, v := range written {
		if old, ok := base[k]; ok && sameValue(old, v) {
			newBase[k] = old
			continue
		}
		stored, err := s.encodeValue(id, k, d.stamp, v)
		if err != nil {
			return nil, err
		}
		d.set = append(d.set, hashField(k), stored)
		newBase[k] = v
		if !immutableValue(v) {
			if c, err := s.decodeValue(id, k, d.stamp, string(stored)); err == nil {
				newBase[k] = c
			}
		}
	}
	for k := range base {
		if _, ok := written[k]; !ok {
			d.del = append(d.del, hashField(k))
		}
	}
	return newBase, nil
}

// moveUser prepares the user index for a write of `d` that stores user `to`
// (a login when `login`) where the session as loaded named `from`, with the
// index entry score `uidx`, and returns the score the written session
// keeps ("" for none).
//
// A write that stores a value of the user key is a login, even of the user
// loaded (stored again after a logout elsewhere, or in a session this
// request cleared and started anew, with a new MaxLifetime that the index
// must outlive). Its index entry is made before the write, so that a
// session is never stored under a user without one, and its score is
// stored with the user. A logout drops the score's field.
func (s *StorageRedisHash) moveUser(ctx context.Context, id string, d *hashDelta, uidx string, login bool, from, to string) (string, error) {
	switch {
	case login:
		uidx, err := s.indexUser(ctx, to, id)
		if err != nil {
			return "", err
		}
		d.set = append(d.set, hashUserIndexField, uidx)
		if _, standalone := s.r.raw.(*redis.Client); standalone {
			d.index = s.r.userIndexKey(to)
		}
		return uidx, nil
	case from != to:
		if uidx != "" {
			d.del = append(d.del, hashUserIndexField)
		}
		return "", nil
	}
	return uidx, nil
}

// written finishes a write of session `id` that did `result`: it logs a
// stale write, moves the user index after it (see moveUser) and tells the
// tracker what the request's map holds now, `now` and `newBase`.
// `loadedUidx` is the score of the index entry of the session as loaded.
func (s *StorageRedisHash) written(ctx context.Context, id string, r *resolved, result hashWrite, now hashLoaded, newBase map[string]any, loadedUidx string, login bool, d *hashDelta, from, to string) error {
	if result == hashGone {
		logStaleWrite(ctx, s.r.backend, id)
		return nil
	}
	if from != "" && (from != to || result != hashStored) {
		// The user loaded is no longer stored, or the session is deleted.
		s.unindexUser(ctx, from, id, loadedUidx)
	}
	if login && result == hashStored && d.index == "" {
		// A DestroyUser that checked the session before this write may
		// have removed the entry made for it: restore it (in the write's
		// script where the two keys can be used together).
		if err := s.confirmUser(ctx, to, id, now.uidx); err != nil {
			return err
		}
	}
	switch result {
	case hashExpired:
		s.r.tracker.lose(r.ref, id)
	case hashEmptied:
		// As RemoveAll: a further write of this map starts a new session.
		s.r.tracker.removed(ctx, id)
	case hashStored:
		// The creation time the hash holds now: the next write of this map
		// checks it.
		s.r.tracker.retrack(r.ref, loaded{id: id, created: now.created, user: to, base: newBase, seal: now.hashSeal})
		if login && r.newLogin(to) {
			// Every write of the user key is a login here, also of the
			// user loaded: after the request's own RemoveAll it is a new
			// session of that user.
			s.limit.apply(ctx, to)
		}
	}
	return nil
}

// hashWrite is what a write did to a session hash.
type hashWrite int

const (
	hashStored  hashWrite = 1  // the session is stored
	hashEmptied hashWrite = 0  // it ended up empty and was deleted
	hashExpired hashWrite = -1 // it is past MaxLifetime and was deleted
	hashGone    hashWrite = -2 // it was loaded, and deleted or replaced since: nothing written
	// hashConflict: sealed, another write changed the manifest the write
	// was based on: nothing written (writeSealed tries again).
	hashConflict hashWrite = -3
)

// hashDelta is what one request changed in a session hash.
type hashDelta struct {
	set     []any         // field, value, field, value...
	del     []string      // fields removed
	created time.Time     // creation time as loaded; zero: unknown or new
	stamp   time.Time     // creation time to store if the hash has none: created, or now
	ttl     time.Duration // the idle TTL to restart
	// index: the key of the user index the write's script confirms the
	// login's entry in (hashConfirmLua), "" for none.
	index string
	// mustExist: the request loaded the session; if it was deleted since
	// (a logout elsewhere, Destroy, DestroyUser), or deleted and replaced
	// by a new session under the id (another creation time), it stays so.
	mustExist bool
}

// write applies `d` to session `id`'s hash in one round trip (see
// SetSession) and reports what it did and, when it stored the session, the
// creation time the hash holds.
func (s *StorageRedisHash) write(ctx context.Context, id string, d hashDelta) (hashWrite, time.Time, error) {
	r := s.r
	if d.mustExist && !d.created.IsZero() && len(d.set) > 0 && len(d.del) == 0 {
		// A loaded session that only gets keys set, the usual write: it
		// cannot end up empty, so the check, HSET and PEXPIRE suffice. One
		// out of lifetime is left to the script, which deletes it only if
		// it is still the session loaded.
		if ttl := lifetimeLeft(d.created, r.maxLifetime, d.ttl, time.Now()); ttl > 0 {
			result, err := s.update(ctx, id, d, ttl)
			return result, d.created, err
		}
	}
	if r.raw == nil || len(d.set) == 0 || d.mustExist || d.index != "" {
		// No transaction through this adapter, a write that removes keys
		// (the script deletes the session if it ends up empty), or a
		// loaded session the update does not cover (gf's format, with no
		// creation time, or one out of lifetime), which must still be the
		// one loaded (a check a transaction cannot make), or a login that
		// confirms its index entry: the script.
		return s.writeScript(ctx, id, d)
	}
	ttl := lifetimeLeft(d.stamp, r.maxLifetime, d.ttl, time.Now())
	if ttl <= 0 {
		// The session ran out of lifetime during this request.
		_, err := r.do(ctx, id, "DEL", r.key(id))
		return hashExpired, time.Time{}, err
	}
	key := r.key(id)
	var created *redis.StringCmd
	_, err := r.raw.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, d.set...)
		if len(d.del) > 0 {
			p.HDel(ctx, key, d.del...)
		}
		p.HSetNX(ctx, key, hashCreatedField, d.stamp.UnixMilli())
		created = p.HGet(ctx, key, hashCreatedField)
		p.PExpire(ctx, key, pxDuration(ttl))
		return nil
	})
	if err != nil {
		return 0, time.Time{}, r.wrap(err, "MULTI", id)
	}
	ms, err := created.Int64()
	if err != nil {
		// Not a number: what the next load makes of it decides.
		return hashStored, time.Time{}, nil
	}
	return hashStored, time.UnixMilli(ms), nil
}

// update applies `d`, which sets keys of a session the request loaded and
// removes none, to session `id`'s hash with hashUpdateScript, giving it a
// TTL of `ttl`.
func (s *StorageRedisHash) update(ctx context.Context, id string, d hashDelta, ttl time.Duration) (hashWrite, error) {
	args := make([]any, 0, 3+len(d.set))
	args = append(args, hashCreatedField, d.created.UnixMilli(), millis(ttl))
	args = append(args, d.set...)
	v, err := s.evalWrite(ctx, hashUpdateScript, id, d, args)
	if err != nil {
		return 0, err
	}
	return hashWrite(v.Int()), nil
}

// evalWrite runs write script `script` on session `id`'s hash with `args`,
// and with d.index, the login's index key and the arguments confirm()
// needs (see hashConfirmLua).
func (s *StorageRedisHash) evalWrite(ctx context.Context, script *redisScript, id string, d hashDelta, args []any) (*gvar.Var, error) {
	r := s.r
	if d.index == "" {
		return r.eval(ctx, script, id, args...)
	}
	args = append(args, id, millis(r.userIndexTTL))
	v, cmd, err := r.evalKeys(ctx, script, []string{r.key(id), d.index}, args...)
	if err != nil {
		return nil, r.wrap(err, cmd, id)
	}
	return v, nil
}

// writeScript applies `d` to session `id`'s hash with hashWriteScript,
// returning what it did and the creation time the hash holds if stored.
func (s *StorageRedisHash) writeScript(ctx context.Context, id string, d hashDelta) (hashWrite, time.Time, error) {
	r := s.r
	must := "" // no check
	if d.mustExist {
		must = "-" // exists (gf's hashes have no creation time)
		if !d.created.IsZero() {
			must = strconv.FormatInt(d.created.UnixMilli(), 10)
		}
	}
	args := make([]any, 0, 7+len(d.set)+len(d.del))
	args = append(args, millis(d.ttl), time.Now().UnixMilli(), r.lifetimeMillis(), hashCreatedField, len(d.set)/2, must, d.stamp.UnixMilli())
	args = append(args, d.set...)
	for _, f := range d.del {
		args = append(args, f)
	}
	v, err := s.evalWrite(ctx, hashWriteScript, id, d, args)
	if err != nil {
		return 0, time.Time{}, err
	}
	if !v.IsSlice() {
		return hashWrite(v.Int()), time.Time{}, nil
	}
	reply := v.Int64s() // {1, creation time}: stored
	if len(reply) != 2 || hashWrite(reply[0]) != hashStored {
		return 0, time.Time{}, gerror.Newf("gfsession: redis-hash storage: session %s: unexpected reply %q of the write script", shortId(id), v.String())
	}
	return hashStored, time.UnixMilli(reply[1]), nil
}

// hashSealedWriteScript is hashWriteScript for a storage with cryptoKeys:
// it applies a request's delta and stores the new manifest only if the
// stored manifest is still the one the delta was computed against, so that
// the manifest always lists exactly the hash's fields. KEYS[1] is the
// session key; ARGV: TTL ms, now (Unix ms), max lifetime ms (0: none), the
// created field, the manifest field, the mode, the creation time (Unix ms),
// the tag of the manifest the write is based on, the new manifest ("": the
// session ends up empty), the number N of fields to set, N field/value
// pairs, then the fields to delete. Modes: "loaded" writes only if the hash
// has that creation time (else {-2}) and manifest tag; "new" only if there
// is no hash; "replace" deletes a hash that has that manifest tag ("": none,
// or one shorter than a tag) and writes anew. It returns {1} when the session is stored, {0} when it
// ended up empty (deleted), {-1} when it is past its lifetime (deleted),
// {-2} (see above), or {-3, creation time, manifest} as stored when the
// check failed (nothing written).
var hashSealedWriteScript = newRedisScript(hashConfirmLua + `
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local max = tonumber(ARGV[3])
local cf, mf, mode, created = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local cur = redis.call('HGET', key, mf)
local tag = ''
if cur and #cur >= 16 then tag = string.sub(cur, -16) end
if mode == 'loaded' then
  local c = redis.call('HGET', key, cf)
  if c ~= created then return {-2} end
  if tag ~= ARGV[8] then return {-3, c, cur or ''} end
elseif mode == 'new' then
  if redis.call('EXISTS', key) == 1 then
    return {-3, redis.call('HGET', key, cf) or '', cur or ''}
  end
else
  if tag ~= ARGV[8] then
    return {-3, redis.call('HGET', key, cf) or '', cur or ''}
  end
  redis.call('DEL', key)
end
if ARGV[9] == '' then
  redis.call('DEL', key)
  return {0}
end
local last = 10 + 2 * tonumber(ARGV[10])
batch('HSET', key, 11, last)
batch('HDEL', key, last + 1, nargs)
redis.call('HSET', key, cf, created, mf, ARGV[9])
if max > 0 then
  local left = tonumber(created) + max - tonumber(ARGV[2])
  if left <= 0 then
    redis.call('DEL', key)
    return {-1}
  end
  if left < ttl then ttl = left end
end
redis.call('PEXPIRE', key, ttl)
confirm()
return {1}
`)

// writeSealed applies `d` to session `id`'s hash with cryptoKeys, in one
// round trip when no other write of the session comes in between, and
// returns what the tracker keeps of the session written. `values` are the
// values of the keys `d` sets (to seal them again for another creation
// time) and `meta` the session as loaded (d.mustExist) or last written.
//
// The new manifest is the one the write is based on with the delta
// applied, sealed by the client: Redis cannot seal. The script stores it
// only if the stored manifest is still that one; otherwise another request
// wrote in between, and the write is computed again on the manifest the
// script returned and tried again, up to hashCASTries times: concurrent
// per-key merges all survive, and the manifest stays exact. A new session
// (not loaded) that finds a session another request created under the id
// meanwhile merges into it; one that finds an unreadable hash replaces it.
// A loaded session whose manifest no longer opens (tampered with since) is
// left alone, as one deleted since (hashGone). With `once` (resealing on
// read) a write that finds the manifest changed gives up (hashConflict).
func (s *StorageRedisHash) writeSealed(ctx context.Context, id string, d hashDelta, values map[string]any, meta hashLoaded, once bool) (hashWrite, hashLoaded, error) {
	c := sealedTry{mode: "new", created: d.stamp, set: d.set}
	if d.mustExist {
		c.mode, c.entries, c.expect = "loaded", meta.entries, meta.tag
	}
	for try := 0; try < hashCASTries; try++ {
		next, manifest := s.nextManifest(id, &c, d.del)
		v, err := s.evalWrite(ctx, hashSealedWriteScript, id, d, sealedArgs(s.r, &d, &c, manifest))
		if err != nil {
			return 0, meta, err
		}
		reply := v.Strings()
		code := hashConflict
		if len(reply) > 0 {
			n, _ := strconv.Atoi(reply[0])
			code = hashWrite(n)
		}
		switch {
		case code == hashGone && !d.mustExist:
			// The session this new one merged into was deleted or replaced
			// since: a new session again.
			if err = s.rebase(id, &c, "new", d.stamp, nil, "", values); err != nil {
				return 0, meta, err
			}
			continue
		case code != hashConflict:
			return code, hashLoaded{created: c.created, hashSeal: hashSeal{tag: manifestTag(manifest), entries: next}}, nil
		case once || len(reply) < 3:
			return hashConflict, meta, nil
		}
		gone, err := s.rebaseOnReply(id, &c, reply, values)
		if err != nil {
			return 0, meta, err
		}
		if gone {
			return hashGone, meta, nil
		}
	}
	return 0, meta, gerror.NewCodef(gcode.CodeInternalError,
		"gfsession: %s storage: session %q changed %d times while being written; try again",
		s.r.backend, s.r.prefix+shortId(id), hashCASTries)
}

// sealedTry is what one try of writeSealed writes on: the script's mode
// ("new", "loaded" or "replace"), the manifest entries and tag it expects
// stored, the creation time the values are sealed for, and the sealed
// field/value pairs to set.
type sealedTry struct {
	mode    string
	entries map[string]string
	expect  string
	created time.Time
	set     []any
}

// nextManifest returns the manifest entries of the session after try `c`
// with the fields `del` deleted, and that manifest sealed ("" for none).
func (s *StorageRedisHash) nextManifest(id string, c *sealedTry, del []string) (map[string]string, string) {
	next := make(map[string]string, len(c.entries)+len(c.set)/2)
	for f, tag := range c.entries {
		next[f] = tag
	}
	for _, f := range del {
		delete(next, f)
	}
	for i := 0; i+1 < len(c.set); i += 2 {
		f := c.set[i].(string)
		if _, ok := hashKey(f); !ok {
			continue // hashUserIndexField: not sealed
		}
		v := c.set[i+1].([]byte)
		next[f] = string(v[len(v)-tagSize:])
	}
	if len(next) == 0 {
		return next, ""
	}
	return next, s.sealManifest(id, c.created, next)
}

// sealedArgs returns the ARGV of hashSealedWriteScript for try `c` of
// delta `d`, storing `manifest`.
func sealedArgs(r *redisStore, d *hashDelta, c *sealedTry, manifest string) []any {
	args := make([]any, 0, 10+len(c.set)+len(d.del))
	args = append(args, millis(d.ttl), time.Now().UnixMilli(), r.lifetimeMillis(), hashCreatedField,
		hashManifestField, c.mode, c.created.UnixMilli(), c.expect, manifest, len(c.set)/2)
	args = append(args, c.set...)
	for _, f := range d.del {
		args = append(args, f)
	}
	return args
}

// rebase makes try `c` a try in `mode` on the manifest `entries` tagged
// `expect`, with the values sealed again for `created` if that changed.
func (s *StorageRedisHash) rebase(id string, c *sealedTry, mode string, created time.Time, entries map[string]string, expect string, values map[string]any) error {
	if !created.Equal(c.created) {
		set, err := s.sealValues(id, c.set, values, created)
		if err != nil {
			return err
		}
		c.created, c.set = created, set
	}
	c.mode, c.entries, c.expect = mode, entries, expect
	return nil
}

// rebaseOnReply prepares the next try after the script found another
// manifest stored than the one try `c` expected: `reply` holds the stored
// creation time and manifest. It reports whether the write must stop as
// hashGone: the session loaded no longer reads (tampered with since).
func (s *StorageRedisHash) rebaseOnReply(id string, c *sealedTry, reply []string, values map[string]any) (bool, error) {
	cur := reply[2]
	curCreated := time.Time{}
	if ms, err := strconv.ParseInt(reply[1], 10, 64); err == nil && ms > 0 {
		curCreated = time.UnixMilli(ms)
	}
	opened, err := s.openManifest(id, curCreated, cur)
	switch {
	case err == nil:
		// Another request wrote in between (or, for a new session, created
		// one under the id): apply the delta to what it stored.
		return false, s.rebase(id, c, "loaded", curCreated, opened, manifestTag(cur), values)
	case c.mode == "loaded":
		return true, nil
	}
	// An unreadable hash under the id: replaced, if it is still the one seen.
	c.mode, c.entries, c.expect = "replace", nil, manifestTag(cur)
	return false, nil
}

// RemoveAll deletes the session: the key gf's storage would keep it under,
// then its handle's (two DELs, see moveRaw). A missing session or an
// invalid id is not an error; an invalid id sends nothing.
func (s *StorageRedisHash) RemoveAll(ctx context.Context, sessionId string) error {
	return s.r.removeAll(ctx, sessionId)
}

// Destroy deletes session `sessionId`; see RemoveAll. It does not read the
// session first, so its user index entry, if any, stays until DestroyUser
// or the user's next login drops it as stale.
func (s *StorageRedisHash) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(adminContext(ctx), sessionId)
}

// hashDropStringScript deletes KEYS[1] if it is a string holding a session
// of the key-value storage (starting with ARGV[1], the envelope's magic) or
// of gf's (a JSON object), returning 1, else 0.
var hashDropStringScript = newRedisScript(`
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
local head = redis.call('GETRANGE', KEYS[1], 0, 2)
if head == ARGV[1] or string.sub(head, 1, 1) == '{' then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
