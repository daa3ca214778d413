package gfsession

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
)

// Factory builds a storage from the map of a `sessionStorage` config node,
// without its "type" key. It returns an error, never panics, for a bad
// config; the error should name the offending key.
type Factory func(ctx context.Context, config map[string]any) (gsession.Storage, error)

// Storage type names of the built-in backends.
const (
	TypeMemory    = "memory"
	TypeFile      = "file"
	TypeRedis     = "redis"
	TypeRedisHash = "redis-hash"
)

// configPath names the config node in error messages.
const configPath = "sessionStorage"

var (
	registryMu sync.RWMutex
	registry   = make(map[string]Factory)
)

// Register makes a storage available by `name` to New and to the
// `sessionStorage` config node. Like database/sql's Register it panics for
// programmer errors: an empty name, a nil factory or a name already taken.
// Names are case-sensitive.
func Register(name string, factory Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" {
		panic("gfsession: Register called with an empty name")
	}
	if factory == nil {
		panic("gfsession: Register factory for " + name + " is nil")
	}
	if _, dup := registry[name]; dup {
		panic("gfsession: Register called twice for storage " + name)
	}
	registry[name] = factory
}

// Names returns the sorted names of the registered storages.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// New builds the storage named by `config`["type"] with the rest of
// `config`. An unknown or missing type is an error listing the valid names.
// Two keys work for every type, custom ones too: `metrics` and `tracing`
// (booleans, default false) wrap the storage with Observe.
func New(ctx context.Context, config map[string]any) (gsession.Storage, error) {
	var (
		typeName string
		rest     = make(map[string]any, len(config))
		found    bool
		observe  ObserveConfig
	)
	for k, v := range config {
		if strings.EqualFold(k, "metrics") || strings.EqualFold(k, "tracing") {
			var on bool
			if err := setField(reflect.ValueOf(&on).Elem(), v); err != nil {
				return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, k)
			}
			if strings.EqualFold(k, "metrics") {
				observe.Metrics = on
			} else {
				observe.Tracing = on
			}
			continue
		}
		if strings.EqualFold(k, "type") {
			s, ok := v.(string)
			if !ok {
				return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
					`%s.type: want a storage name, got %v (%T); valid: %s`, configPath, v, v, strings.Join(Names(), ", "))
			}
			typeName, found = s, true
			continue
		}
		rest[k] = v
	}
	if !found || typeName == "" {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.type: missing; valid: %s`, configPath, strings.Join(Names(), ", "))
	}
	registryMu.RLock()
	factory := registry[typeName]
	registryMu.RUnlock()
	if factory == nil {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.type: unknown storage %q; valid: %s`, configPath, typeName, strings.Join(Names(), ", "))
	}
	storage, err := factory(ctx, rest)
	if err != nil {
		return nil, err
	}
	if observe.Metrics || observe.Tracing {
		observe.Backend = typeName
		return Observe(storage, observe), nil
	}
	return storage, nil
}

// newFromConfigValue builds a storage from the value of a `sessionStorage`
// node: a type name (short form), a map with "type", or a ready storage.
func newFromConfigValue(ctx context.Context, value any) (gsession.Storage, error) {
	switch v := value.(type) {
	case gsession.Storage:
		return v, nil
	case string:
		return New(ctx, map[string]any{"type": v})
	case map[string]any:
		return New(ctx, v)
	case nil:
		return nil, nil
	}
	if m := gconv.Map(value); m != nil {
		return New(ctx, m)
	}
	return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`%s: want a storage name or a map with "type", got %T; valid types: %s`, configPath, value, strings.Join(Names(), ", "))
}

func init() {
	gconv.RegisterAnyConverterFunc(convertServerConfig, reflect.TypeOf((*ghttp.ServerConfig)(nil)))
}

// plainConverter converts the server config without the hook below (a
// private converter has no custom converters registered).
var plainConverter = gconv.NewConverter()

// convertServerConfig is registered with gconv for ghttp.ServerConfig, so
// that gf's Server.SetConfigWithMap and ghttp.ConfigFromMap (and so
// g.Server() reading the config file) build the storage named by the
// `sessionStorage` key, which gf alone cannot convert to gsession.Storage.
// The other keys convert exactly as gf converts them.
func convertServerConfig(from any, to reflect.Value) error {
	m, ok := from.(map[string]any)
	if !ok {
		m = gconv.Map(from)
	}
	if to.Kind() != reflect.Pointer {
		to = to.Addr()
	}
	if m == nil {
		return plainConverter.Struct(from, to.Interface())
	}
	var (
		ctx                     = context.Background()
		storageKey, storageNode = gutil.MapPossibleItemByKey(m, "SessionStorage")
		rest                    = m
	)
	if storageKey != "" {
		rest = make(map[string]any, len(m))
		for k, v := range m {
			if k != storageKey {
				rest[k] = v
			}
		}
	}
	if key, value := gutil.MapPossibleItemByKey(m, "SessionMaxAge"); key != "" {
		if d := gconv.Duration(value); d > 0 && d < time.Second && isNumber(gconv.String(value)) {
			g.Log().Warningf(ctx,
				`gfsession: server.%s is %v with no unit, which gf reads as %v (nanoseconds): sessions expire almost at once; write it with a unit, e.g. "24h"`,
				key, value, d)
		}
	}
	// As gf's own conversion (gconv.Scan): a value that does not convert
	// leaves its field as it was, rather than failing the whole config.
	if err := plainConverter.Struct(rest, to.Interface(), gconv.StructOption{ContinueOnError: true}); err != nil {
		raise(gerror.Wrap(err, "server config"))
	}
	if storageKey == "" {
		return nil
	}
	storage, err := newFromConfigValue(ctx, storageNode)
	if err != nil {
		raise(err)
	}
	to.Interface().(*ghttp.ServerConfig).SessionStorage = storage
	return nil
}

// raise makes a config error reach the caller of gconv.Struct. gf converts
// configs with ContinueOnError, which drops an error returned by a custom
// converter and goes on to fail with an unrelated reflection error ("string
// cannot be converted to gsession.Storage"). A panic with an error that
// carries a stack is recovered by gconv's Struct and returned as its error,
// so the user sees ours, naming the key. TestServerConfigHook checks this.
func raise(err error) {
	if !gerror.HasStack(err) {
		err = gerror.WrapCode(gerror.Code(err), err, "")
	}
	panic(err)
}
