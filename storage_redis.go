package gfsession

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
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
)

const (
	// DefaultRedisPrefix is the prefix of the Redis keys of StorageRedis and
	// StorageRedisHash when RedisConfig.Prefix is empty: session "abc" is
	// stored under "gfsession:abc".
	DefaultRedisPrefix = "gfsession:"

	// DefaultRedisTimeout is the read and write timeout of a Redis client that
	// the config factory creates from inline fields (`address`, ...) without
	// `readTimeout`/`writeTimeout`. gf's own default is no timeout at all, so
	// that a hung server would hang every request.
	DefaultRedisTimeout = 3 * time.Second
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
}

// redisStore is what StorageRedis and StorageRedisHash share: the client,
// the key layout, the envelope and the ownership of the client.
type redisStore struct {
	backend     string // TypeRedis or TypeRedisHash, for errors and logs
	client      *gredis.Redis
	prefix      string
	maxLifetime time.Duration
	env         *envelope
	tracker     loadTracker

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
	return &redisStore{
		backend:     backend,
		client:      client,
		prefix:      prefix,
		maxLifetime: c.MaxLifetime,
		env:         env,
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
	cause := gerror.Cause(err)
	if cause == nil {
		cause = err
	}
	shown := id
	if len(shown) > 8 {
		shown = shown[:8] + "..."
	}
	return gerror.WrapCodef(gcode.CodeInternalError, cause,
		"gfsession: %s storage: redis %s %q", r.backend, cmd, r.prefix+shown)
}

func (r *redisStore) do(ctx context.Context, id, cmd string, args ...any) (*gvar.Var, error) {
	v, err := r.client.Do(ctx, cmd, args...)
	if err != nil {
		return nil, r.wrap(err, cmd, id)
	}
	return v, nil
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
	full := make([]any, 0, 3+len(args))
	full = append(full, s.sha, 1, r.key(id))
	full = append(full, args...)
	v, err := r.client.Do(ctx, "EVALSHA", full...)
	if err != nil && isNoScript(err) {
		full[0] = s.src
		v, err = r.client.Do(ctx, "EVAL", full...)
		if err != nil {
			return nil, r.wrap(err, "EVAL", id)
		}
		return v, nil
	}
	if err != nil {
		return nil, r.wrap(err, "EVALSHA", id)
	}
	return v, nil
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

// removeAll deletes the key of session `id`.
func (r *redisStore) removeAll(ctx context.Context, id string) error {
	if !IsValidSessionId(id) {
		return nil
	}
	_, err := r.do(ctx, id, "DEL", r.key(id))
	return err
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
// in the versioned envelope (see DESIGN.md): values keep their Go types,
// optionally sealed with CryptoKeys. It works on standalone Redis, Sentinel
// and Cluster (whatever the gredis client is configured for); it uses one
// key per command and needs Redis 6.2 or newer (GETEX).
//
// Round trips: a request that only reads costs exactly one command, GETEX
// with PX, which loads the session and restarts its idle TTL (UpdateTTL is
// then a no-op); a request that writes costs one more, SET with PX, or DEL
// when the session became empty. A new session that is never written
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
// The storage does not close a client passed to NewStorageRedis; it closes a
// client it created itself from the config map (Close).
type StorageRedis struct {
	gsession.StorageBase
	r *redisStore
}

// NewStorageRedis creates a storage on the gredis client `redis`, e.g.
// g.Redis() or gredis.New(config). It returns an error for a nil client or a
// bad `config`. The caller keeps ownership of `redis`.
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
// cannot be decoded (corrupt, sealed with an unknown key) also reads as nil,
// logged through gf's logger. Redis errors are returned.
//
// GETEX restarts the key's TTL before the creation time is known, so near
// the end of MaxLifetime the key may outlive the cap by up to `ttl`; the
// session is never served past the cap, and the next read deletes the key.
func (s *StorageRedis) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	r := s.r
	v, err := r.do(ctx, sessionId, "GETEX", r.key(sessionId), "PX", millis(ttl))
	if err != nil {
		return nil, err
	}
	if v == nil || v.IsNil() {
		return nil, nil
	}
	b := v.Bytes()
	if len(b) == 0 {
		return nil, nil
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
	m := gmap.NewStrAnyMapFrom(data, true)
	r.tracker.track(m, sessionId, nil, created)
	return m, nil
}

// SetSession stores the whole session with a TTL of `ttl` (capped by what
// is left of MaxLifetime), in one SET command with PX; an empty session is
// deleted instead. The creation time of a session loaded by GetSession is
// kept; any other session starts now. It is last-writer-wins (see
// StorageRedis). An invalid `sessionId` is an error and sends nothing.
func (s *StorageRedis) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return errInvalidId(sessionId)
	}
	r := s.r
	data := sessionData.Map()
	if len(data) == 0 {
		_, err := r.do(ctx, sessionId, "DEL", r.key(sessionId))
		return err
	}
	now := time.Now()
	created := now
	if l := r.tracker.lookup(sessionData, sessionId); l != nil {
		if c, ok := l.extra.(time.Time); ok && !c.IsZero() {
			created = c
		}
	}
	left := lifetimeLeft(created, r.maxLifetime, ttl, now)
	if left <= 0 {
		// The session ran out of lifetime during this request.
		_, err := r.do(ctx, sessionId, "DEL", r.key(sessionId))
		return err
	}
	blob, err := r.env.encodeSession(sessionId, created, data)
	if err != nil {
		return err
	}
	if _, err = r.do(ctx, sessionId, "SET", r.key(sessionId), blob, "PX", millis(left)); err != nil {
		return err
	}
	r.tracker.retrack(sessionData, sessionId, nil, created)
	return nil
}

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
// config-map fields); a client passed to NewStorageRedis or taken from a gf
// redis group is left open. It is idempotent.
func (s *StorageRedis) Close(ctx context.Context) error {
	return s.r.close(ctx)
}

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
		client, err = redisGroup(ctx, name)
		return client, config, false, err
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

// redisGroup returns the client of the gf redis group `name`, as g.Redis
// would, but with an error instead of a panic or a silent fallback to the
// default group when the group is not configured.
func redisGroup(ctx context.Context, name string) (client *gredis.Redis, err error) {
	notConfigured := func() error {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.redis: redis group %q is not configured: add it under the "redis" node of the config file or with gredis.SetConfig`,
			configPath, name)
	}
	if _, ok := gredis.GetConfig(name); ok {
		if client = gredis.Instance(name); client == nil {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.redis: cannot create a client for redis group %q`, configPath, name)
		}
		return client, nil
	}
	if !g.Cfg().Available(ctx) {
		return nil, notConfigured()
	}
	node, err := g.Cfg().Get(ctx, "redis")
	if err != nil || node == nil || node.IsNil() {
		return nil, notConfigured()
	}
	if _, ok := node.Map()[name]; !ok {
		return nil, notConfigured()
	}
	defer func() {
		if p := recover(); p != nil {
			client = nil
			err = gerror.NewCodef(gcode.CodeInvalidConfiguration, `%s.redis: redis group %q: %v`, configPath, name, p)
		}
	}()
	if client = g.Redis(name); client == nil {
		return nil, notConfigured()
	}
	return client, nil
}
