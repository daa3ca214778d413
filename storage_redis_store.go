package gfsession

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/redis/go-redis/v9"
)

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
	refreshes    refreshMemo // the TTL restarts of loads and writes
	ttl          ttlSeen     // for Sessions
	maxPerUser   int         // RedisConfig.MaxSessionsPerUser
	clientInfo   bool        // RedisConfig.ClientInfo
	// noExpireTime: the server has no PEXPIRETIME (Redis < 7).
	noExpireTime atomic.Bool

	owned     bool // the storage created client and closes it on Close
	closeOnce sync.Once
	closeErr  error
}

// key returns the Redis key of the session stored as `name`: its handle
// (see Handle), or for a session of gf's, which stores sessions under their
// ids, the id. `name` must be a valid session id.
func (r *redisStore) key(name string) string {
	return r.prefix + name
}

// moveRaw moves the session gf's storages keep under the id `id` itself
// (key prefix + id) to its handle `handle`, and reports whether there is a
// session under the handle now. A store written by gf keeps working after
// the switch, and its ids leave the keyspace as they are used. Only a key
// that holds a session of the storage's kind is moved (`keyType`: a string
// in gf's format or this package's, or a hash); any other key under the
// prefix is left alone. A miss costs one round trip (two on a Cluster).
//
// The move is one script, atomic: a logout (RemoveAll, Destroy) deletes
// the key of the id before the key of the handle, so it finds the session
// in one place or the other, never in neither. On a Redis Cluster the two
// keys live in different slots and the script fails with CROSSSLOT; the
// move is then a check, DUMP, DEL and RESTORE, and a logout of the same
// session that runs in the round trip between the DEL and the RESTORE can
// miss it.
func (r *redisStore) moveRaw(ctx context.Context, id, handle, keyType string) (bool, error) {
	if !mayBeStoredRaw(id) {
		return false, nil
	}
	if _, cluster := r.raw.(*redis.ClusterClient); cluster {
		return r.moveRawAcrossSlots(ctx, id, handle, keyType)
	}
	v, cmd, err := r.evalKeys(ctx, moveRawScript, []string{r.key(id), r.key(handle)}, keyType, envelopeMagic)
	if err == nil {
		return v.Int() == 1, nil
	}
	if !strings.Contains(err.Error(), "CROSSSLOT") {
		return false, r.wrap(err, cmd, id)
	}
	return r.moveRawAcrossSlots(ctx, id, handle, keyType)
}

// moveRawScript is moveRaw in one step. KEYS[1] is the key of the id,
// KEYS[2] the key of the handle; ARGV: the storage's key type, the
// envelope's magic. It returns 1 when the handle's key holds a session
// (moved now, or before), else 0.
var moveRawScript = newRedisScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= ARGV[1] then return 0 end
if t == 'string' then
  local head = redis.call('GETRANGE', KEYS[1], 0, 2)
  if head ~= ARGV[2] and string.sub(head, 1, 1) ~= '{' then return 0 end
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
`)

// moveRawAcrossSlots is moveRaw on a Redis Cluster (see moveRaw).
func (r *redisStore) moveRawAcrossSlots(ctx context.Context, id, handle, keyType string) (bool, error) {
	raw := r.key(id)
	t, err := r.do(ctx, id, "TYPE", raw)
	if err != nil || t.String() != keyType {
		return false, err
	}
	if keyType == "string" {
		head, err := r.do(ctx, id, "GETRANGE", raw, 0, 2)
		if err != nil {
			return false, err
		}
		if h := head.String(); h != envelopeMagic && !strings.HasPrefix(h, "{") {
			return false, nil
		}
	}
	dump, err := r.do(ctx, id, "DUMP", raw)
	if err != nil || dump == nil || dump.IsNil() {
		return false, err
	}
	pttl, err := r.do(ctx, id, "PTTL", raw)
	if err != nil {
		return false, err
	}
	gone, err := r.do(ctx, id, "DEL", raw)
	if err != nil || gone.Int() == 0 {
		return err == nil, err // another request moved it (or a logout deleted it)
	}
	_, err = r.client.Do(ctx, "RESTORE", r.key(handle), max(pttl.Int64(), 0), dump.Bytes())
	if err != nil && !strings.Contains(err.Error(), "BUSYKEY") {
		return false, r.wrap(err, "RESTORE", handle)
	}
	return true, nil
}

// removeRaw deletes the key gf's storages would keep session `id` under
// (see moveRaw): a session of gf's not yet read since the switch is deleted
// with its handle's. It sends nothing for an id of the form of a handle.
func (r *redisStore) removeRaw(ctx context.Context, id string) error {
	if !mayBeStoredRaw(id) {
		return nil
	}
	_, err := r.do(ctx, id, "DEL", r.key(id))
	return err
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

// get returns the value of session `id`'s key, or "" when there is no
// such key, and restarts its TTL at `ttl` (GETEX PX), unless this process
// restarted it less than refreshPeriod(ttl) ago (GET; see refreshMemo).
// Through gf's go-redis adapter it calls go-redis directly, which spares
// gredis' reply conversion on the hottest command of the storage, and
// returns the reply string itself: the decoded session's strings share it,
// no copy is made.
func (r *redisStore) get(ctx context.Context, id string, ttl time.Duration) (string, error) {
	now := time.Now()
	restart := r.refreshes.due(id, ttl, now)
	cmd := "GET"
	if restart {
		cmd = "GETEX"
	}
	var (
		s   string
		err error
	)
	switch {
	case r.raw == nil:
		var v *gvar.Var
		if restart {
			v, err = r.do(ctx, id, cmd, r.key(id), "PX", millis(ttl))
		} else {
			v, err = r.do(ctx, id, cmd, r.key(id))
		}
		if err != nil || v == nil || v.IsNil() {
			return "", err
		}
		s = v.String()
	case restart:
		s, err = r.raw.GetEx(ctx, r.key(id), pxDuration(ttl)).Result()
	default:
		s, err = r.raw.Get(ctx, r.key(id)).Result()
	}
	if err == redis.Nil {
		return "", nil
	}
	if err != nil {
		return "", r.wrap(err, cmd, id)
	}
	if restart {
		r.refreshes.restarted(id, ttl, now, time.Now())
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

// removeAll deletes the key of session `id`: first the key gf's storages
// would keep it under (see moveRaw), then its handle's.
func (r *redisStore) removeAll(ctx context.Context, id string) error {
	if !IsValidSessionId(id) {
		return nil
	}
	if err := r.removeRaw(ctx, id); err != nil {
		return err
	}
	return r.destroyHandle(ctx, Handle(id))
}

// destroyHandle deletes the session whose handle is `handle`. A missing
// session, and a `handle` that is not of a handle's form, are not errors.
func (r *redisStore) destroyHandle(ctx context.Context, handle string) error {
	if !IsHandle(handle) {
		return nil
	}
	if _, err := r.do(ctx, handle, "DEL", r.key(handle)); err != nil {
		return err
	}
	r.tracker.removed(ctx, handle)
	return nil
}

// scan calls `fn` with the name of every key of Redis type `keyType` under the
// prefix whose suffix is a valid session id, until `fn` returns false. It
// runs SCAN with MATCH prefix* (glob characters of the prefix escaped),
// TYPE and COUNT redisScanCount, on the one master of a standalone or
// Sentinel client and on every master of a Cluster client, one at a time,
// streaming batch by batch; it never sends KEYS. It needs a client of gf's
// go-redis adapter (gf's contrib/nosql/redis, what g.Redis and gredis.New
// make); with another adapter it fails with CodeNotSupported.
func (r *redisStore) scan(ctx context.Context, keyType string, fn func(id string) bool) error {
	return r.scanKeys(ctx, globEscape(r.prefix)+"*", keyType, func(key string) bool {
		name, ok := strings.CutPrefix(key, r.prefix)
		if !ok || !IsValidSessionId(name) {
			return true
		}
		return fn(name)
	})
}

// scanKeys calls `fn` with every key of Redis type `keyType` that matches
// the glob pattern `match`, until `fn` returns false, as scan describes.
func (r *redisStore) scanKeys(ctx context.Context, match, keyType string, fn func(key string) bool) error {
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
				if !fn(key) {
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

// newLimit returns the sessionLimit of RedisConfig.MaxSessionsPerUser over
// `list`, or nil without one.
func (r *redisStore) newLimit(list func(ctx context.Context, userId string, atMost int) ([]SessionInfo, error)) *sessionLimit {
	if r.maxPerUser <= 0 {
		return nil
	}
	max := r.maxPerUser
	return &sessionLimit{backend: r.backend, max: max,
		list:    func(ctx context.Context, userId string) ([]SessionInfo, error) { return list(ctx, userId, max) },
		destroy: func(ctx context.Context, _, handle string) error { return r.destroyHandle(ctx, handle) }}
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

// lifetimeMillis returns MaxLifetime for the scripts: whole milliseconds,
// rounded up, or 0 for none.
func (r *redisStore) lifetimeMillis() int64 {
	if r.maxLifetime <= 0 {
		return 0
	}
	return millis(r.maxLifetime)
}

// redisShared is what StorageRedis and StorageRedisHash answer the same
// way, on their store `r`, whose sessions are keys of type `keyType`
// ("string" or "hash").
type redisShared struct {
	gsession.StorageBase
	r       *redisStore
	keyType string
	// probeOf is how Sessions reads a session of the storage's kind for a
	// user (see sessionProbe).
	probeOf func(userId string) sessionProbe
}

// Sessions returns the live sessions of user `userId` (see Admin.Sessions):
// one script call for the user's index, then one pipeline that reads each
// session listed (GET, or for StorageRedisHash an HMGET of the user field,
// the creation time and the client field) and its expiry (PEXPIRETIME;
// PTTL before Redis 7, one command at a time, as through another gredis
// adapter). It reads the sessions without restarting their TTL.
func (s *redisShared) Sessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	list, err := s.sessionsOver(ctx, userId, -1)
	return finishSessions(ctx, list), err
}

// sessionsOver is Sessions, unordered and without Current, and none when
// the user's index lists at most `atMost` sessions (-1: no bound; see
// redisStore.sessions).
func (s *redisShared) sessionsOver(ctx context.Context, userId string, atMost int) ([]SessionInfo, error) {
	return s.r.sessions(ctx, userId, atMost, s.probeOf(userId))
}

// Users calls `fn` with each user that has live sessions, and their number
// (see Admin.Users): SCAN of the user indexes on every master, then what
// Sessions reads for each user.
func (s *redisShared) Users(ctx context.Context, fn func(userId string, sessions int) bool) error {
	return s.r.users(ctx, fn, func(userId string) (int, error) {
		list, err := s.sessionsOver(ctx, userId, -1)
		return len(list), err
	})
}

// CountUsers returns the number of users Users visits, at the same cost.
func (s *redisShared) CountUsers(ctx context.Context) (int, error) {
	return countUsers(ctx, s.Users)
}

// New returns a new random session id (see NewSessionId). It sends nothing to
// Redis.
func (s *redisShared) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// UpdateTTL does nothing and returns nil: GetSession already restarted the
// TTL when it loaded the session, or less than min(`ttl`/64, 1s) before (gf
// calls UpdateTTL only for a session it loaded and did not change), which
// saves a round trip per request.
func (s *redisShared) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	return nil
}

// Close closes the Redis client if the storage created it (from inline
// config-map fields, or from a redis group of the config file); a client
// passed to the constructor or shared with gredis.Instance is left open. It
// is idempotent.
func (s *redisShared) Close(ctx context.Context) error {
	return s.r.close(ctx)
}

// Count returns the number of sessions under the prefix: the keys of the
// storage's type whose name is the prefix followed by a valid session id
// or handle. It sends nothing but SCAN, so unlike Range it also counts a
// key there under an id that holds no session. It scans the keyspace, one SCAN per redisScanCount keys on
// every master: its cost grows with the size of the database, not only
// with the sessions.
func (s *redisShared) Count(ctx context.Context) (int, error) {
	return s.r.count(ctx, s.keyType)
}

// Range calls `fn` with the handle (see Handle) of every session under the
// prefix until `fn` returns false or `ctx` is done (its error is then
// returned). It runs SCAN MATCH prefix* TYPE string (StorageRedis) or hash
// (StorageRedisHash), never KEYS, on every master of a Cluster, and holds
// one batch of keys at a time; `fn` may use the storage. Keys named by a
// handle are taken for sessions, which is why the prefix should be the
// sessions' own (with NoPrefix: the whole database). User indexes are
// skipped. It needs gf's go-redis adapter (see redisStore.scan).
//
// A session of gf's own storage of the same kind, under its id, is moved
// to its handle's key first (see moveRaw), as its next load would move it,
// so that DestroyHandle finds it by the handle Range gives; a key under an
// id that holds no session is left alone and not visited. A session moved
// this way is visited once, though SCAN may meet its new key again.
func (s *redisShared) Range(ctx context.Context, fn func(handle string) bool) error {
	var (
		moveErr error
		moved   map[string]bool // the handles this Range moved sessions to, which SCAN may return again
	)
	err := s.r.scan(ctx, s.keyType, func(name string) bool {
		if !IsHandle(name) {
			h := Handle(name)
			ok, err := s.r.moveRaw(ctx, name, h, s.keyType)
			if moveErr = err; err != nil {
				return false
			}
			if !ok {
				return true // not a session: left alone, as a load leaves it
			}
			if moved == nil {
				moved = make(map[string]bool)
			}
			moved[h] = true
			name = h
		} else if moved[name] {
			return true
		}
		return fn(name)
	})
	if moveErr != nil {
		return moveErr
	}
	return err
}

// DestroyHandle deletes the session whose handle is `handle` (see Handle),
// as Destroy deletes a session by id. A missing session is not an error.
func (s *redisShared) DestroyHandle(ctx context.Context, handle string) error {
	return s.r.destroyHandle(adminContext(ctx), handle)
}
