package gfsession

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
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
// ready to use.
type RedisConfig struct {
	// Prefix is prepended to the session id to make the Redis key. Empty means
	// DefaultRedisPrefix (see NoPrefix for no prefix at all). Session ids are
	// checked with IsValidSessionId before any key is built, so an id never
	// adds glob characters, hash tags or separators to a key.
	Prefix string `json:"prefix"`
	// NoPrefix makes the Redis key the bare session id, as gf's own
	// gsession.NewStorageRedis/NewStorageRedisHashTable write it when created
	// without a prefix. It exists for migrating from those (docs/migration.md);
	// use it only on a Redis database that holds nothing but sessions, since a
	// client-chosen session id could otherwise name another key of the
	// application.
	NoPrefix bool `json:"noPrefix"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 means none: only the idle TTL applies.
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
	// UserIndexTTL is how long a user's index lives after the user's last
	// login, and how long an index entry lives at all: every login trims the
	// entries older than that. It must exceed how long a session may stay
	// logged in without a new login; a session logged in for longer escapes
	// DestroyUser. 0 means MaxLifetime when that is set (exact: no session
	// outlives it), else DefaultRedisUserIndexTTL (30 days).
	UserIndexTTL time.Duration `json:"userIndexTTL"`
}

// redisStore is what StorageRedis and StorageRedisHash share: the client,
// the key layout, the envelope and the ownership of the client.
type redisStore struct {
	backend string // TypeRedis or TypeRedisHash, for errors and logs
	client  *gredis.Redis
	// raw is the go-redis client under `client` when gf's go-redis adapter
	// (contrib/nosql/redis) made it, as g.Redis and gredis.New do; nil with
	// another adapter. It serves what gredis.Redis.Do cannot: pipelines,
	// transactions and SCAN on every master of a Cluster.
	raw          redis.UniversalClient
	prefix       string
	maxLifetime  time.Duration
	userKey      string        // RedisConfig.UserKey
	userIndexTTL time.Duration // effective RedisConfig.UserIndexTTL
	env          *envelope
	tracker      loadTracker

	owned     bool // the storage created client and closes it on Close
	closeOnce sync.Once
	closeErr  error
}

func newRedisStore(backend string, client *gredis.Redis, config []RedisConfig) (*redisStore, error) {
	if client == nil {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "gfsession: %s storage: redis client is nil", backend)
	}
	var c RedisConfig
	if len(config) > 0 {
		c = config[0]
	}
	env, err := newEnvelope(c.Codec, c.CryptoKeys)
	if err != nil {
		return nil, err
	}
	prefix := c.Prefix
	switch {
	case c.NoPrefix && c.Prefix != "":
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			"gfsession: %s storage: prefix %q and noPrefix are both set; give one", backend, c.Prefix)
	case c.NoPrefix:
		prefix = ""
	case prefix == "":
		prefix = DefaultRedisPrefix
	}
	indexTTL := c.UserIndexTTL
	switch {
	case indexTTL < 0:
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			"gfsession: %s storage: userIndexTTL %v is negative", backend, indexTTL)
	case indexTTL == 0 && c.MaxLifetime > 0:
		indexTTL = c.MaxLifetime
	case indexTTL == 0:
		indexTTL = DefaultRedisUserIndexTTL
	}
	var raw redis.UniversalClient
	if a := client.GetAdapter(); a != nil {
		raw, _ = a.Client().(redis.UniversalClient)
	}
	return &redisStore{
		backend:      backend,
		client:       client,
		raw:          raw,
		prefix:       prefix,
		maxLifetime:  c.MaxLifetime,
		userKey:      c.UserKey,
		userIndexTTL: indexTTL,
		env:          env,
	}, nil
}

// key returns the Redis key of session `id`, which must be valid.
func (r *redisStore) key(id string) string {
	return r.prefix + id
}

// wrap wraps the error `err` of Redis command `cmd` on session `id`. The
// message names the key with the session id shortened (ids are bearer
// secrets and errors end up in logs) and leaves out the command's arguments,
// which gredis would put in its own message: they hold session data.
func (r *redisStore) wrap(err error, cmd, id string) error {
	return r.wrapKey(err, cmd, r.prefix+shortId(id))
}

// wrapKey wraps the error `err` of Redis command `cmd` on the key shown as
// `shown`, leaving out the command's arguments (see wrap).
func (r *redisStore) wrapKey(err error, cmd, shown string) error {
	cause := gerror.Cause(err)
	if cause == nil {
		cause = err
	}
	return gerror.WrapCodef(gcode.CodeInternalError, cause,
		"gfsession: %s storage: redis %s %q", r.backend, cmd, shown)
}

func (r *redisStore) do(ctx context.Context, id, cmd string, args ...any) (*gvar.Var, error) {
	v, err := r.client.Do(ctx, cmd, args...)
	if err != nil {
		return nil, r.wrap(err, cmd, id)
	}
	return v, nil
}

// getex returns the value of session `id`'s key and restarts its TTL at
// `ttl` (GETEX PX), or "" when there is no such key. Through gf's go-redis
// adapter it calls go-redis directly, which spares gredis' reply
// conversion on the hottest command of the storage, and returns the reply
// string itself: the decoded session's strings share it, no copy is made.
func (r *redisStore) getex(ctx context.Context, id string, ttl time.Duration) (string, error) {
	if r.raw == nil {
		v, err := r.do(ctx, id, "GETEX", r.key(id), "PX", millis(ttl))
		if err != nil || v == nil || v.IsNil() {
			return "", err
		}
		return v.String(), nil
	}
	s, err := r.raw.GetEx(ctx, r.key(id), pxDuration(ttl)).Result()
	if err == redis.Nil {
		return "", nil
	}
	if err != nil {
		return "", r.wrap(err, "GETEX", id)
	}
	return s, nil
}

// isWrongType reports whether `err` is Redis refusing a command on a key of
// another type (WRONGTYPE), as when the key-value and the hash storage share
// a prefix.
func isWrongType(err error) bool {
	return err != nil && strings.Contains(err.Error(), "WRONGTYPE")
}

// redisScript is a Lua script run with EVALSHA, falling back to EVAL (which
// also caches it) when the server does not know it yet (NOSCRIPT: a new or
// restarted server, a failed-over replica, another cluster node).
type redisScript struct {
	src string
	sha string
}

func newRedisScript(src string) *redisScript {
	sum := sha1.Sum([]byte(src))
	return &redisScript{src: src, sha: hex.EncodeToString(sum[:])}
}

// eval runs `s` on the one key of session `id` with `args`.
func (r *redisStore) eval(ctx context.Context, s *redisScript, id string, args ...any) (*gvar.Var, error) {
	v, cmd, err := r.evalKey(ctx, s, r.key(id), args...)
	if err != nil {
		return nil, r.wrap(err, cmd, id)
	}
	return v, nil
}

// evalKey runs `s` on the one key `key` with `args`.
func (r *redisStore) evalKey(ctx context.Context, s *redisScript, key string, args ...any) (*gvar.Var, string, error) {
	return r.evalKeys(ctx, s, []string{key}, args...)
}

// evalKeys runs `s` on the keys `keys` with `args`. It returns the command
// it sent last (EVALSHA or EVAL) and the client's error, unwrapped.
func (r *redisStore) evalKeys(ctx context.Context, s *redisScript, keys []string, args ...any) (*gvar.Var, string, error) {
	full := make([]any, 0, 2+len(keys)+len(args))
	full = append(full, s.sha, len(keys))
	for _, k := range keys {
		full = append(full, k)
	}
	full = append(full, args...)
	v, err := r.client.Do(ctx, "EVALSHA", full...)
	if err != nil && isNoScript(err) {
		full[0] = s.src
		v, err = r.client.Do(ctx, "EVAL", full...)
		return v, "EVAL", err
	}
	return v, "EVALSHA", err
}

func isNoScript(err error) bool {
	cause := gerror.Cause(err)
	if cause == nil {
		cause = err
	}
	return strings.HasPrefix(cause.Error(), "NOSCRIPT")
}

// millis returns `d` as a Redis PX/PEXPIRE argument: whole milliseconds,
// rounded up, at least 1.
func millis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d%time.Millisecond != 0 {
		ms++
	}
	if ms < 1 {
		ms = 1
	}
	return ms
}

// pxDuration returns `d` rounded up to whole milliseconds, at least 1 (see
// millis), for go-redis' expiry arguments.
func pxDuration(d time.Duration) time.Duration {
	return time.Duration(millis(d)) * time.Millisecond
}

// removeAll deletes the key of session `id`.
func (r *redisStore) removeAll(ctx context.Context, id string) error {
	if !IsValidSessionId(id) {
		return nil
	}
	if _, err := r.do(ctx, id, "DEL", r.key(id)); err != nil {
		return err
	}
	r.tracker.removed(ctx, id)
	return nil
}

// ---------------------------------------------------------------------------
// Admin: user index, SCAN, DestroyUser (shared by both Redis storages)

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

// userIndexScript records session ARGV[1] in the user index KEYS[1], in one
// round trip (see userIndexLua for the arguments).
var userIndexScript = newRedisScript(userIndexLua + `
index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
`)

// userIndexKey returns the key of the index of user `userId`.
func (r *redisStore) userIndexKey(userId string) string {
	return r.prefix + redisUserInfix + userId
}

// shownUserIndex returns the key of user `userId`'s index for errors, a long
// user id cut.
func (r *redisStore) shownUserIndex(userId string) string {
	if len(userId) > 64 {
		userId = userId[:64] + "..."
	}
	return r.userIndexKey(userId)
}

// indexUser records session `id` in the index of user `userId` (one script
// call). It runs before the session is written, so that a session is never
// stored under a user without its index entry.
func (r *redisStore) indexUser(ctx context.Context, userId, id string) error {
	if userId == "" {
		return nil
	}
	_, cmd, err := r.evalKey(ctx, userIndexScript, r.userIndexKey(userId),
		id, time.Now().UnixMilli(), millis(r.userIndexTTL))
	if err != nil {
		return r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	return nil
}

// unindexUser removes session `id` from the index of user `userId` (one
// ZREM), after the session was written without that user or deleted. It is
// best effort: an entry it fails to remove is stale, and DestroyUser, or the
// trim of the user's next login, drops it.
func (r *redisStore) unindexUser(ctx context.Context, userId, id string) {
	if userId == "" {
		return
	}
	_, _ = r.client.Do(ctx, "ZREM", r.userIndexKey(userId), id)
}

// reindexUser moves session `id` from the index of user `from` to the one
// of user `to` around `write`, the session's write: the new entry before it,
// the removal of the old one after it succeeded. Nothing is sent when the
// user did not change: ordinary writes cost no index command.
func (r *redisStore) reindexUser(ctx context.Context, id, from, to string, write func() error) error {
	if from == to {
		return write()
	}
	if err := r.indexUser(ctx, to, id); err != nil {
		return err
	}
	if err := write(); err != nil {
		// errStaleWrite too: the session under the id is not the one that
		// had user `from` (another may have it now). The entry for `to`
		// stays behind; DestroyUser checks the session before deleting.
		return err
	}
	r.unindexUser(ctx, from, id)
	return nil
}

// errStaleWrite is what a write callback of reindexUser returns when the
// session was deleted or replaced since the request loaded it, and nothing
// was written.
var errStaleWrite = errors.New("session deleted or replaced since it was loaded")

// scan calls `fn` with the id of every key of Redis type `keyType` under the
// prefix whose suffix is a valid session id, until `fn` returns false. It
// runs SCAN with MATCH prefix* (glob characters of the prefix escaped),
// TYPE and COUNT redisScanCount, on the one master of a standalone or
// Sentinel client and on every master of a Cluster client, one at a time,
// streaming batch by batch; it never sends KEYS. It needs a client of gf's
// go-redis adapter (gf's contrib/nosql/redis, what g.Redis and gredis.New
// make); with another adapter it fails with CodeNotSupported.
func (r *redisStore) scan(ctx context.Context, keyType string, fn func(id string) bool) error {
	var nodes []redis.UniversalClient
	switch c := r.raw.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			nodes = append(nodes, node)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return r.wrapKey(err, "CLUSTER SLOTS", r.prefix+"*")
		}
	case redis.UniversalClient:
		nodes = []redis.UniversalClient{c}
	default:
		return gerror.NewCodef(gcode.CodeNotSupported,
			"gfsession: %s storage: Count and Range need a gredis client of gf's go-redis adapter (contrib/nosql/redis), got adapter %T", r.backend, r.client.GetAdapter())
	}
	match := globEscape(r.prefix) + "*"
	for _, node := range nodes {
		var cursor uint64
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			keys, next, err := node.ScanType(ctx, cursor, match, redisScanCount, keyType).Result()
			if err != nil {
				return r.wrapKey(err, "SCAN", match)
			}
			for _, key := range keys {
				if err := ctx.Err(); err != nil {
					return err
				}
				id, ok := strings.CutPrefix(key, r.prefix)
				if !ok || !IsValidSessionId(id) {
					continue
				}
				if !fn(id) {
					return nil
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// globEscape escapes the characters of `s` that a Redis glob pattern (SCAN
// MATCH) gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// count counts what scan visits.
func (r *redisStore) count(ctx context.Context, keyType string) (int, error) {
	n := 0
	err := r.scan(ctx, keyType, func(string) bool { n++; return true })
	return n, err
}

// userIndexReadScript returns the entries of the user index KEYS[1] as a
// flat list: member, score, member, score... (a script, so that the reply
// is flat whatever protocol the client speaks).
var userIndexReadScript = newRedisScript(`
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
`)

// userIndexDropScript removes from the user index KEYS[1] the entries given
// as ARGV member/score pairs that still have that score: an entry a login
// re-added meanwhile (a newer score) stays. It returns the members removed.
var userIndexDropScript = newRedisScript(`
local removed = {}
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
return removed
`)

// destroyUser deletes the sessions of user `userId` listed in the user's
// index: `destroy` deletes one session if it still belongs to the user and
// reports whether it deleted a live one. Every entry read is then removed
// from the index, deleted or stale (expired, of another user now), unless a
// login re-added it meanwhile.
//
// A session found not to belong to the user whose entry was then removed is
// checked once more, after the removal: a login whose index entry was made
// before its write (as both storages do, where the index and the session
// cannot be written in one script) may have stored the user between the
// check and the removal, and is deleted then. A login stored after the
// removal restores its entry itself (the key-value storage indexes after
// the write, the hash storage confirms the entry after it), so whatever
// the interleaving, a session stored under the user is either deleted or
// still indexed.
func (r *redisStore) destroyUser(ctx context.Context, userId string, destroy func(id string) (bool, error)) (int, error) {
	if r.userKey == "" {
		return 0, errNoUserKey(r.backend)
	}
	if userId == "" {
		return 0, nil
	}
	key := r.userIndexKey(userId)
	v, cmd, err := r.evalKey(ctx, userIndexReadScript, key)
	if err != nil {
		return 0, r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	var (
		n       int
		entries = v.Strings()
		done    []any
		kept    = make(map[string]bool) // sessions of `done` found not to be the user's
	)
	flush := func() error {
		if len(done) == 0 {
			return nil
		}
		removed, cmd, err := r.evalKey(ctx, userIndexDropScript, key, done...)
		done = done[:0]
		if err != nil {
			return r.wrapKey(err, cmd, r.shownUserIndex(userId))
		}
		for _, id := range removed.Strings() {
			if !kept[id] {
				continue
			}
			deleted, err := destroy(id)
			if err != nil {
				return err
			}
			if deleted {
				n++
			}
		}
		clear(kept)
		return nil
	}
	for i := 0; i+1 < len(entries); i += 2 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		id := entries[i]
		if IsValidSessionId(id) {
			deleted, err := destroy(id)
			if err != nil {
				return n, err
			}
			if deleted {
				n++
			} else {
				kept[id] = true
			}
		}
		if done = append(done, id, entries[i+1]); len(done) >= 2*redisBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// errKeepsChanging is DestroyUser's error for a session that concurrent
// requests rewrote redisCASTries times between its read and its delete.
func (r *redisStore) errKeepsChanging(id string) error {
	return gerror.NewCodef(gcode.CodeInternalError,
		"gfsession: %s storage: DestroyUser: session %q changed %d times while being deleted; try again",
		r.backend, r.prefix+shortId(id), redisCASTries)
}

// close closes the client if the storage created it.
func (r *redisStore) close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		if r.owned {
			r.closeErr = r.client.Close(ctx)
		}
	})
	return r.closeErr
}

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
// then a no-op); a request that writes costs one more: SET with PX for a
// new session, a script that checks the session is still the one loaded
// and SETs it for a loaded one (see SetSession), or DEL when the session
// became empty. A new session that is never written
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
	gsession.StorageBase
	r *redisStore
}

var _ Admin = (*StorageRedis)(nil)

// NewStorageRedis creates a storage on the gredis client `redis`, e.g.
// g.Redis() or gredis.New(config). It returns an error for a nil client or a
// bad `config`. The caller keeps ownership of `redis`. Give the client a
// readTimeout and writeTimeout: gf's default is none, and a Redis that stops
// answering then hangs every request (the config factory sets
// DefaultRedisTimeout for you).
func NewStorageRedis(redis *gredis.Redis, config ...RedisConfig) (*StorageRedis, error) {
	r, err := newRedisStore(TypeRedis, redis, config)
	if err != nil {
		return nil, err
	}
	return &StorageRedis{r: r}, nil
}

func init() {
	Register(TypeRedis, newStorageRedisFromConfig)
}

func newStorageRedisFromConfig(ctx context.Context, m map[string]any) (gsession.Storage, error) {
	client, config, owned, err := redisFromConfig(ctx, m)
	if err != nil {
		return nil, err
	}
	s, err := NewStorageRedis(client, config)
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
func (s *StorageRedis) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession loads the session and restarts its idle TTL at `ttl`, in one
// GETEX command. It returns nil, and no error, when the session does not
// exist, has expired, has outlived MaxLifetime (its key is then deleted), or
// `sessionId` is not a valid id (nothing is sent to Redis). Stored data that
// cannot be decoded (corrupt, sealed with an unknown key) and a key of
// another type (WRONGTYPE: a hash storage's session under the same prefix)
// also read as nil, logged through gf's logger; the next write replaces
// them. Redis errors are returned.
//
// GETEX restarts the key's TTL before the creation time is known, so near
// the end of MaxLifetime the key may outlive the cap by up to `ttl`; the
// session is never served past the cap, and the next read deletes the key.
func (s *StorageRedis) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	r := s.r
	b, err := r.getex(ctx, sessionId, ttl)
	if isWrongType(err) {
		// Another kind of key under the prefix (a session of the hash
		// storage, say): unreadable here, and replaced by the next write.
		logDropped(ctx, r.backend, sessionId, err)
		return nil, nil
	}
	if err != nil || len(b) == 0 {
		return nil, err
	}
	data, created, err := r.env.decodeSession(sessionId, b)
	if err != nil {
		logDropped(ctx, r.backend, sessionId, err)
		return nil, nil
	}
	if lifetimeLeft(created, r.maxLifetime, ttl, time.Now()) <= 0 {
		// Delete it, or reads of the dead session would keep sliding its TTL.
		if _, err := r.do(ctx, sessionId, "DEL", r.key(sessionId)); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if len(data) == 0 {
		return nil, nil
	}
	if r.env.staleSeal(b) {
		r.reseal(ctx, sessionId, b, created, data)
	}
	m := gmap.NewStrAnyMapFrom(data, true)
	r.tracker.track(m, sessionId, nil, loadedMeta{created: created, user: userOf(data, r.userKey)})
	return m, nil
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
	blob, err := r.env.encodeSession(id, created, data)
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
	if !IsValidSessionId(sessionId) {
		return errInvalidId(sessionId)
	}
	if sessionData == nil {
		return gerror.NewCodef(gcode.CodeInvalidParameter, "gfsession: %s storage: SetSession of session %q: data is nil", s.r.backend, shortId(sessionId))
	}
	r := s.r
	var prev loadedMeta
	l, ref, found := r.tracker.lookup(sessionData)
	loaded := found && l.id == sessionId
	if loaded {
		prev, _ = l.extra.(loadedMeta)
		if r.tracker.removedBySelf(ctx, sessionId, l) {
			// A new session under the id; the user index entry as loaded
			// is still there to move.
			loaded, prev.created = false, time.Time{}
		}
	} else if found {
		// Loaded under another id (RegenerateId): a new session that keeps
		// the creation time, and so the MaxLifetime, of the one it replaces.
		m, _ := l.extra.(loadedMeta)
		prev.created = m.created
	}
	data := sessionData.Map()
	if len(data) == 0 {
		// The user index entry, if any, stays until DestroyUser or the
		// age trim drops it (see write).
		return r.removeAll(ctx, sessionId)
	}
	now := time.Now()
	cur := loadedMeta{created: prev.created, user: userOf(data, r.userKey)}
	if cur.created.IsZero() {
		cur.created = now
	}
	left := lifetimeLeft(cur.created, r.maxLifetime, ttl, now)
	if left <= 0 {
		// The session ran out of lifetime during this request: deleted for
		// good, so a further write of this map is dropped too.
		_, err := r.do(ctx, sessionId, "DEL", r.key(sessionId))
		return err
	}
	blob, err := r.env.encodeSession(sessionId, cur.created, data)
	if err != nil {
		return err
	}
	mode := kvWriteNew
	switch {
	case !loaded:
	case prev.created.IsZero():
		// Loaded in gf's format, which has no creation time: only while it
		// exists.
		mode = kvWriteExisting
	default:
		// Only while it is the session loaded: one deleted since (a logout
		// elsewhere, Destroy, DestroyUser), or deleted and replaced by a new
		// session under the id, stays so.
		mode = kvWriteLoaded
	}
	written, err := s.write(ctx, sessionId, blob, left, mode, prev.created, prev.user, cur.user)
	if err != nil {
		return err
	}
	if !written {
		logStaleWrite(ctx, r.backend, sessionId)
		return nil
	}
	r.tracker.retrack(ref, sessionId, nil, cur)
	return nil
}

// kvWrite is how SetSession writes a session's key.
type kvWrite int

const (
	kvWriteNew      kvWrite = iota // a session not loaded: unconditionally
	kvWriteExisting                // loaded in gf's format: only while the key exists
	kvWriteLoaded                  // loaded: only while the key holds the session loaded
)

// write stores `blob` as session `id` with a TTL of `left`, as `mode` says
// (`created` is the creation time loaded, for kvWriteLoaded), and reports
// whether it was written: false means the session was deleted or replaced
// since it was loaded, and nothing was written.
//
// With a user, `to`, in the session written, the user's index names the
// session once the write is done, whatever happened to the index while the
// request ran: the entry is added after the write, as one script with it
// where the two keys can be used together (a client of one server, or
// Sentinel), else by a second call after it (a Cluster, where they live in
// different slots, or another gredis adapter); a login (`to` other than the
// user loaded, `from`) is also indexed before the write there, so that a
// failure between the two calls leaves no session of a user without its
// entry. An entry is never removed here: the index of a user the session
// no longer names keeps it until DestroyUser checks the session and drops
// it, or until it is older than UserIndexTTL. Removing it at a logout
// could remove it after a concurrent request, which loaded the session
// before the logout, wrote the user back.
func (s *StorageRedis) write(ctx context.Context, id string, blob []byte, left time.Duration, mode kvWrite, created time.Time, from, to string) (bool, error) {
	r := s.r
	var createdArg [8]byte
	binary.BigEndian.PutUint64(createdArg[:], uint64(created.UnixMilli()))
	args := []any{blob, millis(left), string(createdArg[:]), envelopeMagic, int(mode)}
	keys := []string{r.key(id)}
	_, standalone := r.raw.(*redis.Client)
	together := to != "" && standalone
	if together {
		keys = append(keys, r.userIndexKey(to))
		args = append(args, id, time.Now().UnixMilli(), millis(r.userIndexTTL))
	} else if to != "" && to != from {
		if err := r.indexUser(ctx, to, id); err != nil {
			return false, err
		}
	}
	var (
		v   *gvar.Var
		err error
	)
	if mode == kvWriteNew && !together {
		// Nothing to check or index with it: a plain SET.
		v, err = r.do(ctx, id, "SET", r.key(id), blob, "PX", millis(left))
		if err != nil {
			return false, err
		}
	} else {
		var cmd string
		if v, cmd, err = r.evalKeys(ctx, kvWriteScript, keys, args...); err != nil {
			return false, r.wrap(err, cmd, id)
		}
		if v != nil && !v.IsNil() && v.Int() != 1 {
			return false, nil
		}
	}
	if v == nil || v.IsNil() {
		return false, nil
	}
	if to != "" && !together {
		if err := r.indexUser(ctx, to, id); err != nil {
			return true, err
		}
	}
	return true, nil
}

// kvWriteScript writes a session of StorageRedis. KEYS[1] is the session
// key, KEYS[2] (optional) the index of the user the session names; ARGV:
// the new value, its TTL in ms, the 8 bytes of the creation time loaded as
// the envelope stores them, the envelope's magic, the kvWrite mode, and
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

// UpdateTTL does nothing and returns nil: GetSession already restarted the
// TTL when it loaded the session (gf calls UpdateTTL only for a session it
// loaded and did not change), which saves a round trip per request.
func (s *StorageRedis) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	return nil
}

// RemoveAll deletes the session (one DEL). A missing session or an invalid
// id is not an error; an invalid id sends nothing.
func (s *StorageRedis) RemoveAll(ctx context.Context, sessionId string) error {
	return s.r.removeAll(ctx, sessionId)
}

// Close closes the Redis client if the storage created it (from inline
// config-map fields, or from a redis group of the config file); a client
// passed to NewStorageRedis or shared with gredis.Instance is left open. It
// is idempotent.
func (s *StorageRedis) Close(ctx context.Context) error {
	return s.r.close(ctx)
}

// Count returns the number of sessions under the prefix: the string keys
// whose name is the prefix followed by a valid session id (see Range). It
// scans the keyspace, one SCAN per redisScanCount keys on every master: its
// cost grows with the size of the database, not only with the sessions.
func (s *StorageRedis) Count(ctx context.Context) (int, error) {
	return s.r.count(ctx, "string")
}

// Range calls `fn` with the id of every session under the prefix until `fn`
// returns false or `ctx` is done (its error is then returned). It runs SCAN
// MATCH prefix* TYPE string, never KEYS, on every master of a Cluster, and
// holds one batch of keys at a time; `fn` may use the storage. String keys
// of gf's own StorageRedis under the same prefix are sessions too (this
// storage reads them); any other string key there whose name after the
// prefix is a valid session id is taken for one, which is why the prefix
// should be the sessions' own (with NoPrefix: the whole database). User
// indexes are skipped. It needs gf's go-redis adapter (see redisStore.scan).
func (s *StorageRedis) Range(ctx context.Context, fn func(sessionId string) bool) error {
	return s.r.scan(ctx, "string", fn)
}

// Destroy deletes session `sessionId`; see RemoveAll. It does not read the
// session first, so its user index entry, if any, stays until DestroyUser
// or the user's next login drops it as stale.
func (s *StorageRedis) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(ctx, sessionId)
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
	r := s.r
	return r.destroyUser(ctx, userId, func(id string) (bool, error) {
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

// ---------------------------------------------------------------------------
// Config map

// redisClientKeys are the gredis.Config fields accepted inline in a
// `sessionStorage` node, by their json tags.
var redisClientKeys = func() []string {
	var keys []string
	t := reflect.TypeOf(gredis.Config{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}()

// redisFromConfig reads a `sessionStorage` node of type redis or redis-hash:
// the RedisConfig keys plus either `redis` (the name of a group of gf's
// `redis` config node, shared with g.Redis) or inline gredis.Config fields
// (`address`, `db`, `pass`, `masterName`, `cluster`, timeouts, ...), from
// which it creates a client that the storage owns. Inline durations need a
// unit ("500ms"), as every duration option here; readTimeout and
// writeTimeout default to DefaultRedisTimeout.
func redisFromConfig(ctx context.Context, m map[string]any) (client *gredis.Redis, config RedisConfig, owned bool, err error) {
	extra := append([]string{"redis"}, redisClientKeys...)
	rest, err := decodeConfig(configPath, m, &config, extra...)
	if err != nil {
		return nil, config, false, err
	}
	var (
		group    any
		hasGroup bool
		inline   = make(map[string]any, len(rest))
	)
	for k, v := range rest {
		if strings.EqualFold(k, "redis") {
			group, hasGroup = v, true
			continue
		}
		inline[k] = v
	}
	if hasGroup {
		if len(inline) > 0 {
			var names []string
			for k := range inline {
				names = append(names, k)
			}
			return nil, config, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.redis: give either a redis group or inline redis fields, not both (also set: %s)`,
				configPath, strings.Join(names, ", "))
		}
		name, ok := group.(string)
		if !ok || name == "" {
			return nil, config, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.redis: want the name of a group of the "redis" config node, got %v (%T)`, configPath, group, group)
		}
		client, owned, err = redisGroup(ctx, name)
		return client, config, owned, err
	}
	if len(inline) == 0 {
		return nil, config, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s: no Redis given: set "redis" to a group of the "redis" config node (e.g. "default") or "address" to the server(s)`,
			configPath)
	}
	var rc gredis.Config
	if _, err = decodeConfig(configPath, inline, &rc); err != nil {
		return nil, config, false, err
	}
	if strings.TrimSpace(rc.Address) == "" {
		return nil, config, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.address: missing; give the Redis address(es), "host:port[,host:port...]"`, configPath)
	}
	if rc.ReadTimeout == 0 {
		rc.ReadTimeout = DefaultRedisTimeout
	}
	if rc.WriteTimeout == 0 {
		rc.WriteTimeout = DefaultRedisTimeout
	}
	client, err = gredis.New(&rc)
	if err != nil {
		return nil, config, false, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.address`, configPath)
	}
	return client, config, true, nil
}

// redisGroup returns a client for the gf redis group `name`: the group
// configured with gredis.SetConfig, or else group `name` of the config
// file's "redis" node. It returns an error, naming the key, when the group is
// not configured or its config is invalid, where g.Redis would panic or fall
// back to the default group.
//
// It never calls g.Redis: the config hook runs inside g.Server, which holds
// one of the locks of gf's instance registry (64 of them, chosen by a hash of
// the instance name), and g.Redis takes one of the same locks, so for about
// one server name in 64 start-up would wait forever. A group of the config
// file therefore gets a client of the storage's own, made from the group's
// config, and `owned` reports it: the storage closes it on Close.
//
// gf's client waits on Redis without limit when the group sets no
// readTimeout or writeTimeout, so a Redis that stops answering (paused,
// unreachable on the network) would hang every request. The storage's own
// client uses DefaultRedisTimeout for what the group leaves unset; a group
// set with gredis.SetConfig that sets both timeouts shares gredis.Instance's
// client, which the storage does not close.
func redisGroup(ctx context.Context, name string) (client *gredis.Redis, owned bool, err error) {
	cfg, inCode := gredis.GetConfig(name)
	if !inCode {
		if cfg, err = redisGroupFileConfig(ctx, name); err != nil {
			return nil, false, err
		}
	}
	if inCode && cfg.ReadTimeout > 0 && cfg.WriteTimeout > 0 {
		// gredis.Instance has a registry of its own, not gf's instance one.
		if client = gredis.Instance(name); client == nil {
			return nil, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.redis: cannot create a client for redis group %q`, configPath, name)
		}
		return client, false, nil
	}
	own := *cfg
	if own.ReadTimeout <= 0 {
		own.ReadTimeout = DefaultRedisTimeout
	}
	if own.WriteTimeout <= 0 {
		own.WriteTimeout = DefaultRedisTimeout
	}
	if client, err = gredis.New(&own); err != nil {
		return nil, false, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.redis: redis group %q`, configPath, name)
	}
	return client, true, nil
}

// redisGroupFileConfig reads group `name` of the config file's "redis" node
// as g.Redis does, without taking g.Redis's lock. It returns an error naming
// the key when the config has no such group or it is invalid.
func redisGroupFileConfig(ctx context.Context, name string) (*gredis.Config, error) {
	notConfigured := gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`%s.redis: redis group %q is not configured: add it under the "redis" node of the config file or with gredis.SetConfig`,
		configPath, name)
	if !g.Cfg().Available(ctx) {
		return nil, notConfigured
	}
	all, err := g.Cfg().Data(ctx)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err,
			`%s.redis: reading redis group %q from the config`, configPath, name)
	}
	_, node := gutil.MapPossibleItemByKey(all, "redis")
	group, ok := gconv.Map(node)[name]
	if !ok {
		return nil, notConfigured
	}
	groupMap := gconv.Map(group)
	if len(groupMap) == 0 {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.redis: redis group %q: want a map of gredis config fields, got %v (%T)`, configPath, name, group, group)
	}
	cfg, err := gredis.ConfigFromMap(groupMap)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.redis: redis group %q`, configPath, name)
	}
	return cfg, nil
}
