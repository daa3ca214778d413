package gfsession

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
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

	owned     bool // the storage created client and closes it on Close
	closeOnce sync.Once
	closeErr  error
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
}

// New returns a new random session id (see NewSessionId). It sends nothing to
// Redis.
func (s *redisShared) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// UpdateTTL does nothing and returns nil: GetSession already restarted the
// TTL when it loaded the session (gf calls UpdateTTL only for a session it
// loaded and did not change), which saves a round trip per request.
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
// (see Range). It scans the keyspace, one SCAN per redisScanCount keys on
// every master: its cost grows with the size of the database, not only
// with the sessions.
func (s *redisShared) Count(ctx context.Context) (int, error) {
	return s.r.count(ctx, s.keyType)
}

// Range calls `fn` with the id of every session under the prefix until `fn`
// returns false or `ctx` is done (its error is then returned). It runs SCAN
// MATCH prefix* TYPE string (StorageRedis) or hash (StorageRedisHash),
// never KEYS, on every master of a Cluster, and holds one batch of keys at
// a time; `fn` may use the storage. Sessions of gf's own storage of the
// same kind under the prefix are sessions too (this storage reads them);
// any other key of that type there whose name after the prefix is a valid
// session id is taken for one, which is why the prefix should be the
// sessions' own (with NoPrefix: the whole database). User indexes are
// skipped. It needs gf's go-redis adapter (see redisStore.scan).
func (s *redisShared) Range(ctx context.Context, fn func(sessionId string) bool) error {
	return s.r.scan(ctx, s.keyType, fn)
}
