package gfsession

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/redis/go-redis/v9"
)

const (
	// DefaultRedisPrefix is the prefix of the Redis keys of StorageRedis and
	// StorageRedisHash when RedisConfig.Prefix is empty: session "abc" is
	// stored under "gfsession:abc".
	DefaultRedisPrefix = "gfsession:"

	// DefaultRedisTimeout is the read and write timeout of a Redis client that
	// the config factory creates, from inline fields (`address`, ...) or from
	// a gf redis group, without `readTimeout`/`writeTimeout`. gf's own
	// default is no timeout at all, so that a hung server would hang every
	// request.
	DefaultRedisTimeout = 3 * time.Second

	// DefaultRedisUserIndexTTL is RedisConfig.UserIndexTTL when neither it nor
	// MaxLifetime is set.
	DefaultRedisUserIndexTTL = 30 * 24 * time.Hour

	// redisUserInfix follows the prefix in the key of a user index:
	// prefix + "user:" + user id. ':' is not a session id character, so the
	// key can never be a session's.
	redisUserInfix = "user:"
	// redisScanCount is the COUNT hint of the SCAN behind Count and Range.
	redisScanCount = 500
	// redisBatch is how many entries DestroyUser removes from a user index
	// in one call.
	redisBatch = 500
	// redisCASTries is how often DestroyUser retries deleting a session that
	// a concurrent request rewrote between its read and its delete.
	redisCASTries = 5
)

// RedisConfig configures StorageRedis and StorageRedisHash. The zero value is
// ready to use. It has no cleanup interval: Redis expires the keys itself,
// so the storages run no cleaner.
type RedisConfig struct {
	// Prefix is prepended to the session's handle (see Handle) to make the
	// Redis key, and to the session id to find a session of gf's. Empty
	// means DefaultRedisPrefix (see NoPrefix for no prefix at all). Session
	// ids are checked with IsValidSessionId before any key is built, so an
	// id never adds glob characters, hash tags or separators to a key.
	Prefix string `json:"prefix"`
	// NoPrefix makes the Redis key the bare handle, and the key of a session
	// of gf's the bare session id, as gf's own
	// gsession.NewStorageRedis/NewStorageRedisHashTable write it when created
	// without a prefix. It exists for migrating from those (docs/migration.md);
	// use it only on a Redis database that holds nothing but sessions, since a
	// client-chosen session id could otherwise name another key of the
	// application. Setting both NoPrefix and Prefix is an error.
	NoPrefix bool `json:"noPrefix"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 means none: only the idle TTL applies; so
	// does a negative value in code (a config map refuses one).
	MaxLifetime time.Duration `json:"maxLifetime"`
	// CryptoKeys seal the stored sessions with AES-256-GCM: 32 bytes each, the
	// first seals, all open (rotate by prepending a new key). In a config file
	// they are base64 strings. Empty means sessions are stored unsealed.
	CryptoKeys [][]byte `json:"cryptoKeys"`
	// Codec names the value encoding: CodecBinary (the default, keeps Go
	// types) or CodecJSON.
	Codec string `json:"codec"`
	// UserKey is the session key holding the user id, for DestroyUser ("log
	// out everywhere"). With it set, writes keep a user index: one sorted
	// set per user, key prefix + "user:" + user id (with NoPrefix: "user:" +
	// user id), holding the user's session ids scored by the time they were
	// indexed (StorageRedis: every write of a session naming the user;
	// StorageRedisHash: a login). Empty disables the index, and DestroyUser
	// fails.
	UserKey string `json:"userKey"`
	// MaxSessionsPerUser bounds the live sessions of one user (by UserKey,
	// which it needs): when a write makes a session belong to a user who
	// then has more, the least recently active ones are destroyed. 1 is
	// "one login per account". 0 means no bound; a negative value, or one
	// without UserKey, is an error.
	MaxSessionsPerUser int `json:"maxSessionsPerUser"`
	// ClientInfo keeps with each session the client IP and User-Agent of
	// the request that created or last wrote it (from the ghttp request in
	// the context), for Admin.Sessions. Off by default: it is personal
	// data. Sealed with the session when CryptoKeys are set. (StorageRedisHash
	// keeps it in the reserved field "\\x00client".)
	ClientInfo bool `json:"clientInfo"`
	// UserIndexTTL is how long a user's index lives after the user's last
	// login, and how long an index entry lives at all: every login trims the
	// entries older than that. It must exceed how long a session may stay
	// logged in without a new login; a session logged in for longer escapes
	// DestroyUser. 0 means MaxLifetime when that is set (exact: no session
	// outlives it), else DefaultRedisUserIndexTTL (30 days). A negative value
	// is an error.
	UserIndexTTL time.Duration `json:"userIndexTTL"`
}

// newRedisStore returns the store of a storage of type `backend` on
// `client`, with the first of `config` (normalized, see
// RedisConfig.normalize), or the zero RedisConfig.
func newRedisStore(backend string, client *gredis.Redis, config []RedisConfig) (*redisStore, error) {
	if client == nil {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "gfsession: %s storage: redis client is nil", backend)
	}
	var c RedisConfig
	if len(config) > 0 {
		c = config[0]
	}
	if err := c.normalize(backend); err != nil {
		return nil, err
	}
	env, err := newStorageEnvelope(backend, c.Codec, c.CryptoKeys)
	if err != nil {
		return nil, err
	}
	var raw redis.UniversalClient
	if a := client.GetAdapter(); a != nil {
		raw, _ = a.Client().(redis.UniversalClient)
	}
	return &redisStore{
		backend:      backend,
		client:       client,
		raw:          raw,
		prefix:       c.Prefix,
		maxLifetime:  c.MaxLifetime,
		userKey:      c.UserKey,
		maxPerUser:   c.MaxSessionsPerUser,
		clientInfo:   c.ClientInfo,
		userIndexTTL: c.UserIndexTTL,
		env:          env,
	}, nil
}

// ---------------------------------------------------------------------------
// User index: the Lua function that userIndexScript (storage_redis_index.go)
// and kvWriteScript share

// userIndexLua adds session ARGV[1] to the user index KEYS[1] (a sorted set),
// with ARGV[2] now (Unix ms) and ARGV[3] the index TTL ms. It drops the
// entries older than the index TTL (sessions that, by UserIndexTTL's
// contract, can no longer be logged in), adds the session scored now, and
// makes the index live at least the index TTL. The score of an entry only
// grows, by at least 1 on every add, so that DestroyUser, which removes an
// entry only if its score has not changed since it checked the session
// (userIndexDropScript), never removes an entry re-added after its check.
const userIndexLua = `
local function index(key, id, now, ttl)
  now = tonumber(now)
  ttl = tonumber(ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
  local score = redis.call('ZSCORE', key, id)
  if score and tonumber(score) >= now then
    now = tonumber(score) + 1
  end
  redis.call('ZADD', key, now, id)
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
`

// ---------------------------------------------------------------------------
// StorageRedis

// StorageRedis keeps each session as one Redis key holding the whole session
// in the versioned envelope of this package: values keep their Go types,
// optionally sealed with CryptoKeys. It works on standalone Redis, Sentinel
// and Cluster (whatever the gredis client is configured for); it uses one
// key per command and needs Redis 6.2 or newer (GETEX).
//
// Round trips: a request that only reads costs exactly one command, GETEX
// with PX, which loads the session and restarts its idle TTL (UpdateTTL is
// then a no-op), or a plain GET when this process restarted the TTL less
// than min(ttl/64, 1s) ago: a session in use several times a second costs
// one TTL restart a second, and expires at most that period earlier than a
// restart at every read would make it. A request that writes costs one
// more: SET with PX for a new session, a script that checks the session is
// still the one loaded and SETs it for a loaded one (see SetSession), or
// DEL when the session became empty. A new session that is never written
// creates no key. TTLs are in milliseconds, so sub-second TTLs work.
//
// Concurrent requests of one session are last-writer-wins: each writing
// request stores the whole session as it saw it, so of two requests that set
// different keys at the same time only one write survives. Use
// StorageRedisHash when concurrent requests write different keys.
//
// It reads sessions written by gf's gsession.StorageRedis (a JSON object)
// under the same prefix, and rewrites them in its own format on their next
// write; see docs/migration.md.
//
// It implements Admin. Count and Range SCAN the keys under the prefix (on
// every master of a Cluster). With RedisConfig.UserKey, a user index (one
// sorted set per user, see UserKey) lets DestroyUser read only the user's
// sessions. Every write of a session that names a user lists it in that
// user's index, in the write's own script on a single server or Sentinel
// (no extra round trip), after the write on a Cluster, where the index
// lives in another slot (one more round trip): a session stored under a
// user is always in the user's index, whatever concurrent requests did.
// Entries are never removed by writes; stale ones (expired sessions,
// sessions of another user now or logged out, sessions deleted by Destroy
// or RegenerateId) are checked and dropped by DestroyUser and trimmed by
// the user's next write once older than UserIndexTTL.
//
// The storage does not close a client passed to NewStorageRedis; it closes a
// client it created itself from the config map (Close).
type StorageRedis struct {
	redisShared
	w sessionWriter
}

var _ Admin = (*StorageRedis)(nil)

// NewStorageRedis creates a storage on the gredis client `redis`, e.g.
// g.Redis() or gredis.New(config). It returns an error for a nil client or a
// bad `config`. The caller keeps ownership of `redis`. Give the client a
// readTimeout and writeTimeout: gf's default is none, and a Redis that stops
// answering then hangs every request (the config factory sets
// DefaultRedisTimeout for you).
func NewStorageRedis(redis *gredis.Redis, config ...RedisConfig) (*StorageRedis, error) {
	return newRedisStorage(TypeRedis, redis, config, newStorageRedisOn)
}

// newStorageRedisOn returns the StorageRedis of store `r`, writing through
// the whole-session write path.
func newStorageRedisOn(r *redisStore) *StorageRedis {
	s := &StorageRedis{redisShared: redisShared{r: r, keyType: "string"}}
	s.probeOf = s.probe
	s.w = sessionWriter{backend: r.backend, tracker: &r.tracker, env: r.env, driver: redisDriver{r},
		userKey: r.userKey, maxLifetime: r.maxLifetime, clientInfo: r.clientInfo}
	s.w.limit = r.newLimit(s.sessionsOver)
	return s
}

// GetSession loads the session and restarts its idle TTL at `ttl`, in one
// GETEX command (a GET, leaving the TTL alone, when this process restarted
// it less than min(`ttl`/64, 1s) ago). It returns nil, and no error, when
// the session does not exist, has expired, has outlived MaxLifetime (its
// key is then deleted), or `sessionId` is not a valid id (nothing is sent to Redis). Stored data that
// cannot be decoded (corrupt, sealed with an unknown key) and a key of
// another type (WRONGTYPE: a hash storage's session under the same prefix)
// also read as nil, logged through gf's logger; the next write replaces
// them. Redis errors are returned.
//
// GETEX restarts the key's TTL before the creation time is known, so near
// the end of MaxLifetime the key may outlive the cap by up to `ttl`; the
// session is never served past the cap, and the next read deletes the key.
//
// The session is stored under its handle (see Handle). When the handle's
// key is missing, a session gf's StorageRedis left under the id itself is
// moved to the handle's key (see moveRaw) and loaded from there: a miss
// costs one more round trip.
func (s *StorageRedis) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	s.r.ttl.note(ttl)
	return loadByHandle(sessionId,
		func(h string) (*gmap.StrAnyMap, bool, error) { return s.getSession(ctx, h, ttl) },
		func(h string) (bool, error) { return s.r.moveRaw(ctx, sessionId, h, "string") })
}

// getSession is GetSession of the session stored as `sessionId` (its
// handle); `found` reports whether there was a key.
func (s *StorageRedis) getSession(ctx context.Context, sessionId string, ttl time.Duration) (m *gmap.StrAnyMap, found bool, err error) {
	r := s.r
	b, err := r.get(ctx, sessionId, ttl)
	if isWrongType(err) {
		// Another kind of key under the prefix (a session of the hash
		// storage, say): unreadable here, and replaced by the next write.
		logDropped(ctx, r.backend, sessionId, err)
		return nil, true, nil
	}
	if err != nil || len(b) == 0 {
		return nil, false, err
	}
	data, created, err := r.env.decodeSession(sessionId, b)
	if err != nil {
		logDropped(ctx, r.backend, sessionId, err)
		return nil, true, nil
	}
	if lifetimeLeft(created, r.maxLifetime, ttl, time.Now()) <= 0 {
		// Delete it, or reads of the dead session would keep sliding its
		// TTL; only if it is still what was read: a new session another
		// request wrote under the id since is not.
		if _, err := r.eval(ctx, kvDeleteIfScript, sessionId, b); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	if len(data) == 0 {
		return nil, true, nil
	}
	if r.env.staleSeal(b) {
		r.reseal(ctx, sessionId, b, created, data)
	}
	return s.w.loaded(sessionId, created, data), true, nil
}

// resealScript replaces a session's value, keeping its TTL, only if it is
// still the value that was read. KEYS[1] is the session key; ARGV: the
// value read, the new value.
var resealScript = newRedisScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
`)

// reseal stores session `id`, read as `stored` and sealed with an old key,
// sealed with the first key, once: a session that is only read would keep
// the old key needed for as long as it lives. It replaces the value only if
// no write came in between, and a failure only logs: the read succeeded.
func (r *redisStore) reseal(ctx context.Context, id, stored string, created time.Time, data map[string]any) {
	_, _, meta, _ := r.env.decodeSessionMeta(id, stored)
	blob, err := r.env.encodeSessionMeta(id, created, data, meta)
	if err == nil {
		_, err = r.eval(ctx, resealScript, id, stored, blob)
	}
	if err != nil {
		g.Log().Warningf(ctx, `gfsession: %s: sealing session %q with the new crypto key: %v`, r.backend, shortId(id), err)
	}
}

// SetSession stores the whole session with a TTL of `ttl` (capped by what
// is left of MaxLifetime), in one round trip; an empty session is deleted
// instead. It is last-writer-wins (see StorageRedis). An invalid
// `sessionId` is an error and sends nothing.
//
// It follows the package's write rules (see Writes in the package
// documentation). The write is one script (kvWriteScript), or a plain SET
// with PX for a new session that indexes no user with it: a session
// GetSession loaded is written only while the stored session still has the
// creation time loaded (one in gf's format, which has no creation time,
// only while it exists: SET ... XX).
//
// With a UserKey, the write also lists the session in the index of the
// user it names, as StorageRedis describes (see write for the order). A nil
// `sessionData` is an error (CodeInvalidParameter).
func (s *StorageRedis) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite(s.r.backend, sessionId, sessionData); err != nil {
		return err
	}
	s.r.ttl.note(ttl)
	return s.w.setSession(ctx, Handle(sessionId), sessionData, ttl)
}

// redisDriver is the sessionDriver of StorageRedis.
type redisDriver struct{ r *redisStore }

// put writes `w.blob` as session `w.id` with a TTL of `w.ttl`, in one
// command: a plain SET PX for a new session without a user, else
// kvWriteScript.
//
// With a user, the user's index names the session once the write is done,
// whatever happened to the index while the request ran: the entry is added
// in the write's script where the two keys can be used together (a client
// of one server, or Sentinel), else by a second call after it (a Cluster,
// where they live in different slots, or another gredis adapter; a login
// is also indexed before the write there, see indexUser).
func (d redisDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	r := d.r
	start := time.Now()
	var createdArg [8]byte
	binary.BigEndian.PutUint64(createdArg[:], uint64(w.loaded.created.UnixMilli()))
	args := []any{w.blob, millis(w.ttl), string(createdArg[:]), envelopeMagic, int(w.match)}
	keys := []string{r.key(w.id)}
	together := w.user != "" && d.indexesInScript()
	if together {
		keys = append(keys, r.userIndexKey(w.user))
		args = append(args, w.id, time.Now().UnixMilli(), millis(r.userIndexTTL))
	}
	var (
		v   *gvar.Var
		err error
	)
	if w.match == matchNone && !together {
		// Nothing to check or index with it: a plain SET.
		if v, err = r.do(ctx, w.id, "SET", r.key(w.id), w.blob, "PX", millis(w.ttl)); err != nil {
			return false, err
		}
	} else {
		var cmd string
		if v, cmd, err = r.evalKeys(ctx, kvWriteScript, keys, args...); err != nil {
			return false, r.wrap(err, cmd, w.id)
		}
		if v != nil && !v.IsNil() && v.Int() != 1 {
			return false, nil
		}
	}
	if v == nil || v.IsNil() {
		return false, nil
	}
	r.refreshes.restarted(w.id, w.ttl, start, time.Now()) // the write set the TTL
	if w.user != "" && !together {
		return true, r.confirmUser(ctx, w.user, w.id)
	}
	return true, nil
}

// indexesInScript reports whether put adds the user index entry in the
// write's own script: on a client of one server (or Sentinel), where the
// session key and the index key can be used together.
func (d redisDriver) indexesInScript() bool {
	_, standalone := d.r.raw.(*redis.Client)
	return standalone
}

// remove deletes the session's key.
func (d redisDriver) remove(ctx context.Context, id string) error {
	_, err := d.r.do(ctx, id, "DEL", d.r.key(id))
	return err
}

// holds reports whether the key of session `l.id` still holds the session
// loaded, by the creation time in its envelope header (GETRANGE), or for a
// session in gf's format by its existence.
func (d redisDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	r := d.r
	if l.created.IsZero() {
		v, err := r.do(ctx, l.id, "EXISTS", r.key(l.id))
		return err == nil && v.Int() == 1, err
	}
	v, err := r.do(ctx, l.id, "GETRANGE", r.key(l.id), 0, headerSize-1)
	if err != nil {
		return false, err
	}
	head := v.Bytes()
	return len(head) == headerSize && string(head[:len(envelopeMagic)]) == envelopeMagic &&
		int64(binary.BigEndian.Uint64(head[5:])) == l.created.UnixMilli(), nil
}

// indexUser adds the entry of a login before its write, where put cannot
// add it in the write's script.
func (d redisDriver) indexUser(ctx context.Context, user, id string) error {
	if d.indexesInScript() {
		return nil
	}
	return d.r.indexUser(ctx, user, id)
}

// kvWriteScript writes a session of StorageRedis. KEYS[1] is the session
// key, KEYS[2] (optional) the index of the user the session names; ARGV:
// the new value, its TTL in ms, the 8 bytes of the creation time loaded as
// the envelope stores them, the envelope's magic, the write's match (0 new,
// 1 only while the key exists, 2 only while it holds the session loaded), and
// with KEYS[2] the session id, now (Unix ms) and the index TTL in ms. It
// returns 1 when it wrote (and indexed), 0 when the session is gone or
// another one. A loaded session is compared by its 13 header bytes only
// (GETRANGE; "" for a missing key): GET would copy a whole large session
// into Lua just to compare 11 of its bytes.
var kvWriteScript = newRedisScript(userIndexLua + `
local mode = tonumber(ARGV[5])
if mode == 2 then
  local cur = redis.call('GETRANGE', KEYS[1], 0, 12)
  if string.sub(cur, 1, 3) ~= ARGV[4] or string.sub(cur, 6, 13) ~= ARGV[3] then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif mode == 1 then
  if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX') then
    return 0
  end
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if #KEYS > 1 then
  index(KEYS[2], ARGV[6], ARGV[7], ARGV[8])
end
return 1
`)

// RemoveAll deletes the session: the key gf's storage would keep it under,
// then its handle's (two DELs, see moveRaw). A missing session or an
// invalid id is not an error; an invalid id sends nothing.
func (s *StorageRedis) RemoveAll(ctx context.Context, sessionId string) error {
	return s.r.removeAll(ctx, sessionId)
}

// Destroy deletes session `sessionId`; see RemoveAll. It does not read the
// session first, so its user index entry, if any, stays until DestroyUser
// or the user's next login drops it as stale.
func (s *StorageRedis) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(adminContext(ctx), sessionId)
}

// DestroyUser deletes every session whose RedisConfig.UserKey value equals
// `userId` and returns how many it deleted. It reads the user's index (one
// script call), loads each session listed (GET) and deletes it only if it still
// holds that user, atomically (a script deleting the key only if its value
// is still the one read); entries found stale are not counted. The read
// entries are then removed from the index. It costs about two round trips
// per indexed session. Without a UserKey it fails with CodeInvalidOperation.
//
// A request of the user that loaded its session before DestroyUser and
// writes it after does not bring it back: see SetSession.
func (s *StorageRedis) DestroyUser(ctx context.Context, userId string) (int, error) {
	return s.DestroyUserExcept(ctx, userId, "")
}

// DestroyUserExcept is DestroyUser sparing the session whose handle is
// `keep`, whose index entry stays too.
func (s *StorageRedis) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	r := s.r
	return r.destroyUser(ctx, userId, keep, func(id string) (bool, error) {
		for try := 0; try < redisCASTries; try++ {
			v, err := r.do(ctx, id, "GET", r.key(id))
			if err != nil {
				return false, err
			}
			if v == nil || v.IsNil() {
				return false, nil
			}
			b := v.String()
			if b == "" {
				return false, nil
			}
			data, created, err := r.env.decodeSession(id, b)
			if err != nil || userOf(data, r.userKey) != userId {
				return false, nil
			}
			res, err := r.eval(ctx, kvDeleteIfScript, id, b)
			if err != nil {
				return false, err
			}
			if res.Int() == 1 {
				return lifetimeLeft(created, r.maxLifetime, time.Hour, time.Now()) > 0, nil
			}
		}
		return false, r.errKeepsChanging(id)
	})
}

// kvDeleteIfScript deletes KEYS[1] if its value is ARGV[1], returning 1,
// else 0.
var kvDeleteIfScript = newRedisScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// probe is how Sessions reads a session of StorageRedis for user `userId`:
// a GET, decoded to check the user and read the creation time and client
// info.
func (s *StorageRedis) probe(userId string) sessionProbe {
	r := s.r
	return sessionProbe{
		args: func(key string) []any { return []any{"GET", key} },
		judge: func(name string, reply any) (SessionInfo, bool) {
			if reply == nil {
				return SessionInfo{}, false
			}
			data, created, meta, err := r.env.decodeSessionMeta(name, gconv.String(reply))
			if err != nil || userOf(data, r.userKey) != userId ||
				lifetimeLeft(created, r.maxLifetime, time.Hour, time.Now()) <= 0 {
				return SessionInfo{}, false
			}
			ip, ua := splitClient(meta.client)
			return SessionInfo{Created: created, ClientIP: ip, UserAgent: ua}, true
		},
	}
}

// userKeyName returns RedisConfig.UserKey.
func (s *redisShared) userKeyName() string { return s.r.userKey }
