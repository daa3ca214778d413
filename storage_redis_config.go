package gfsession

import (
	"context"
	"reflect"
	"strings"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
)

// normalize checks `c`, the config of a storage of type `backend` (TypeRedis
// or TypeRedisHash), and applies its defaults: DefaultRedisPrefix for an
// empty Prefix without NoPrefix, and for a UserIndexTTL of 0 the
// MaxLifetime, or DefaultRedisUserIndexTTL without one. Prefix with
// NoPrefix, a negative MaxLifetime or UserIndexTTL, an unknown Codec and a
// bad crypto key are errors naming the option, "gfsession: <backend>
// storage: <key>: ...". The storages have no cleaner (Redis expires the
// keys), so no interval to turn off.
func (c *RedisConfig) normalize(backend string) error {
	switch {
	case c.NoPrefix && c.Prefix != "":
		return configError(backend, "noPrefix", "set together with prefix %q; give one or the other", c.Prefix)
	case !c.NoPrefix && c.Prefix == "":
		c.Prefix = DefaultRedisPrefix
	}
	if c.MaxLifetime < 0 {
		c.MaxLifetime = 0 // none, as the field's doc says of any value <= 0
	}
	if err := notNegative(backend, "userIndexTTL", c.UserIndexTTL); err != nil {
		return err
	}
	if err := limitNeedsUserKey(backend, c.MaxSessionsPerUser, c.UserKey); err != nil {
		return err
	}
	switch {
	case c.UserIndexTTL == 0 && c.MaxLifetime > 0:
		c.UserIndexTTL = c.MaxLifetime
	case c.UserIndexTTL == 0:
		c.UserIndexTTL = DefaultRedisUserIndexTTL
	}
	_, err := newStorageEnvelope(backend, c.Codec, c.CryptoKeys)
	return err
}

// init registers the storage types TypeRedis and TypeRedisHash.
func init() {
	Register(TypeRedis, redisFactory(TypeRedis, newStorageRedisOn))
	Register(TypeRedisHash, redisFactory(TypeRedisHash, newStorageRedisHashOn))
}

// newRedisStorage is NewStorageRedis and NewStorageRedisHash: the storage
// that `on` makes of the redisStore of type `backend` on `client`.
func newRedisStorage[S any](backend string, client *gredis.Redis, config []RedisConfig, on func(*redisStore) S) (S, error) {
	r, err := newRedisStore(backend, client, config)
	if err != nil {
		var none S
		return none, err
	}
	return on(r), nil
}

// redisConfigKeys are the keys of a `sessionStorage` node of type redis or
// redis-hash besides the RedisConfig ones: `redis`, a group of gf's `redis`
// config node, or the gredis.Config fields, by their json tags, inline.
var redisConfigKeys = append([]string{"redis"}, configKeys(reflect.TypeOf(gredis.Config{}))...)

// redisFactory returns the Factory of storage type `backend` (TypeRedis or
// TypeRedisHash), whose storage `on` makes of its redisStore. The config
// map holds the RedisConfig keys and the client's (see redisFromConfig); a
// bad config fails before a client is made, and a client the factory made
// is the storage's, closed by its Close.
func redisFactory[S gsession.Storage](backend string, on func(*redisStore) S) Factory {
	return configFactory(func(ctx context.Context, config RedisConfig, rest map[string]any) (gsession.Storage, error) {
		if err := config.normalize(backend); err != nil {
			return nil, err
		}
		client, owned, err := redisFromConfig(ctx, rest)
		if err != nil {
			return nil, err
		}
		r, err := newRedisStore(backend, client, []RedisConfig{config})
		if err != nil {
			if owned {
				_ = client.Close(ctx)
			}
			return nil, err
		}
		r.owned = owned
		return on(r), nil
	}, redisConfigKeys...)
}

// redisFromConfig returns the client that the keys `m` of a `sessionStorage`
// node of type redis or redis-hash give, besides the RedisConfig ones:
// either `redis` (the name of a group of gf's `redis` config node, shared
// with g.Redis; see redisGroup) or inline gredis.Config fields (`address`,
// `db`, `pass`, `masterName`, `cluster`, timeouts, ...), from which it
// creates a client that the storage owns (`owned`). Inline durations need a
// unit ("500ms"), as every duration option here; readTimeout and
// writeTimeout default to DefaultRedisTimeout.
func redisFromConfig(ctx context.Context, m map[string]any) (client *gredis.Redis, owned bool, err error) {
	var (
		group    any
		hasGroup bool
		inline   = make(map[string]any, len(m))
	)
	for k, v := range m {
		if strings.EqualFold(k, "redis") {
			group, hasGroup = v, true
			continue
		}
		inline[k] = v
	}
	if !hasGroup {
		client, err = redisInline(inline)
		return client, err == nil, err
	}
	if len(inline) > 0 {
		var names []string
		for k := range inline {
			names = append(names, k)
		}
		return nil, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.redis: give either a redis group or inline redis fields, not both (also set: %s)`,
			configPath, strings.Join(names, ", "))
	}
	name, ok := group.(string)
	if !ok || name == "" {
		return nil, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.redis: want the name of a group of the "redis" config node, got %v (%T)`, configPath, group, group)
	}
	return redisGroup(ctx, name)
}

// redisInline creates a client from the inline gredis.Config fields
// `inline` of a `sessionStorage` node (see redisFromConfig).
func redisInline(inline map[string]any) (*gredis.Redis, error) {
	if len(inline) == 0 {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s: no Redis given: set "redis" to a group of the "redis" config node (e.g. "default") or "address" to the server(s)`,
			configPath)
	}
	var rc gredis.Config
	if _, err := decodeConfig(configPath, inline, &rc); err != nil {
		return nil, err
	}
	if strings.TrimSpace(rc.Address) == "" {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.address: missing; give the Redis address(es), "host:port[,host:port...]"`, configPath)
	}
	if rc.ReadTimeout == 0 {
		rc.ReadTimeout = DefaultRedisTimeout
	}
	if rc.WriteTimeout == 0 {
		rc.WriteTimeout = DefaultRedisTimeout
	}
	client, err := gredis.New(&rc)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.address`, configPath)
	}
	return client, nil
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
