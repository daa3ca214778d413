package gfsession

import (
	"context"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/glog"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
)

// Factory builds a storage from the map of a `sessionStorage` config node,
// without its "type" key. It returns an error, never panics, for a bad
// config; the error should name the offending key.
type Factory func(ctx context.Context, config map[string]any) (gsession.Storage, error)

// Storage type names of the built-in storages: the `type` of a
// `sessionStorage` config node and the names New and Names know them by.
const (
	// TypeMemory names StorageMemory: sessions in process memory, merged
	// per key.
	TypeMemory = "memory"
	// TypeFile names StorageFile: one file per session in a folder,
	// last-writer-wins per session.
	TypeFile = "file"
	// TypeRedis names StorageRedis: one Redis key per session holding the
	// whole session, last-writer-wins per session.
	TypeRedis = "redis"
	// TypeRedisHash names StorageRedisHash: one Redis hash per session, one
	// field per session key, merged per key.
	TypeRedisHash = "redis-hash"
	// TypeDB names StorageDB: one row per session in a SQL table (MySQL or
	// MariaDB, PostgreSQL, SQLite) through gf's gdb, last-writer-wins per
	// session.
	TypeDB = "db"
)

// configPath names the config node in error messages.
const configPath = "sessionStorage"

var (
	registryMu sync.RWMutex
	// registry holds the storages by lower-case name.
	registry = make(map[string]registered)
)

// registered is a storage as Register received it.
type registered struct {
	name    string
	factory Factory
}

// Register makes a storage available by `name` to New and to the
// `sessionStorage` config node. Like database/sql's Register it panics for
// programmer errors: an empty name, a nil factory or a name already taken.
// Names are matched ignoring case, as config keys are: "Redis" in a config
// file picks "redis", and Register("Redis", ...) panics once "redis" is
// taken.
func Register(name string, factory Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" {
		panic("gfsession: Register called with an empty name")
	}
	if factory == nil {
		panic("gfsession: Register factory for " + name + " is nil")
	}
	if r, dup := registry[strings.ToLower(name)]; dup {
		panic("gfsession: Register called twice for storage " + name + " (taken by " + r.name + ")")
	}
	registry[strings.ToLower(name)] = registered{name: name, factory: factory}
}

// Names returns the sorted names of the registered storages, as registered.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for _, r := range registry {
		names = append(names, r.name)
	}
	sort.Strings(names)
	return names
}

// New builds the storage named by `config`["type"] (matched ignoring case)
// with the rest of `config`. An unknown or missing type is an error listing
// the valid names; every error names the key it is about, as
// "sessionStorage.<key>". Two keys work for every type, custom ones too:
// `metrics` and `tracing` (booleans, default false; the fields of
// ObserveConfig, decoded as every option is) wrap the storage with Observe.
//
// A storage on a network backend (redis, redis-hash, db) is checked once
// before New returns, within a short timeout: when the backend does not
// answer, New logs a warning naming it and its address and still returns
// the storage, which works as soon as the backend does.
func New(ctx context.Context, config map[string]any) (gsession.Storage, error) {
	var observe ObserveConfig
	rest, err := decodeFields(configPath, config, &observe)
	if err != nil {
		return nil, err
	}
	r, rest, err := storageType(rest)
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	storage, err := r.factory(ctx, rest)
	if err != nil {
		return nil, keyedError(configPath, rest, err)
	}
	checkBackend(ctx, r.name, storage)
	if observe.Metrics || observe.Tracing {
		observe.Backend = r.name
		return Observe(storage, observe), nil
	}
	return storage, nil
}

// storageType returns the registered storage that the "type" key of the
// config map `m` names (matched ignoring case), and the other keys of `m`.
// A missing type or one that is not registered is an error listing the
// valid names.
func storageType(m map[string]any) (r registered, rest map[string]any, err error) {
	var (
		typeName string
		found    bool
	)
	rest = make(map[string]any, len(m))
	for k, v := range m {
		if !strings.EqualFold(k, "type") {
			rest[k] = v
			continue
		}
		s, ok := v.(string)
		if !ok {
			return r, nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: want a storage name, got %v (%T); valid: %s`, configPath, k, v, v, strings.Join(Names(), ", "))
		}
		typeName, found = strings.TrimSpace(s), true
	}
	if !found || typeName == "" {
		return r, nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.type: missing; valid: %s`, configPath, strings.Join(Names(), ", "))
	}
	registryMu.RLock()
	r, ok := registry[strings.ToLower(typeName)]
	registryMu.RUnlock()
	if !ok {
		return r, nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.type: unknown storage %q; valid: %s`, configPath, typeName, strings.Join(Names(), ", "))
	}
	return r, rest, nil
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

// serverNode names gf's server config node in error messages.
const serverNode = "server"

// serverInfo is what the config hook tells a storage factory, through its
// context, about the server the storage is for.
type serverInfo struct {
	// name is the server's name as ghttp has it when it starts.
	name string
	// sessionPath is the server's sessionPath, gf's folder for session files.
	sessionPath string
	// unnamed is true for a server with gf's default name, which every
	// application that does not name its server shares.
	unnamed bool
}

type serverInfoKey struct{}

// serverOf returns the server a storage is being built for by the config
// hook, if it is.
func serverOf(ctx context.Context) (serverInfo, bool) {
	info, ok := ctx.Value(serverInfoKey{}).(serverInfo)
	return info, ok
}

// convertServerConfig is registered with gconv for ghttp.ServerConfig, so
// that gf's Server.SetConfigWithMap and ghttp.ConfigFromMap (and so
// g.Server() reading the config file) build the storage named by the
// `sessionStorage` key, which gf alone cannot convert to gsession.Storage.
// The other keys convert exactly as gf converts them, except that:
//
//   - a bare number for `sessionMaxAge` or `sessionCookieMaxAge` is an
//     error (see checkSessionDurations);
//   - `cookieHttpOnly` and `cookieSameSite` default to true and "lax" (see
//     secureCookieDefaults);
//   - a file storage without a `path` is kept in gf's folder for the
//     server's session files, `sessionPath` joined with the server's name.
//
// Errors name the full key, e.g. "server.sessionStorage.type".
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
	if err := checkSessionDurations(m); err != nil {
		raise(err)
	}
	// As gf's own conversion (gconv.Scan): a value that does not convert
	// leaves its field as it was, rather than failing the whole config.
	if err := plainConverter.Struct(rest, to.Interface(), gconv.StructOption{ContinueOnError: true}); err != nil {
		raise(gerror.Wrap(err, "server config"))
	}
	config := to.Interface().(*ghttp.ServerConfig)
	if err := secureCookieDefaults(ctx, m, config); err != nil {
		raise(err)
	}
	if storageKey == "" {
		return nil
	}
	name := serverName(ctx, m, config)
	ctx = context.WithValue(ctx, serverInfoKey{}, serverInfo{
		name:        name,
		sessionPath: config.SessionPath,
		unnamed:     name == ghttp.DefaultServerName,
	})
	storage, err := newFromConfigValue(ctx, storageNode)
	if err != nil {
		raise(prefixError(serverNode+".", err))
	}
	config.SessionStorage = storage
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

// startupLogger returns gf's default logger, the one g.Log() returns,
// without calling g.Log(): the config hook runs inside g.Server(), which
// holds a lock of gf's instance registry that g.Log() takes too for some
// server names (the registry has 64 locks, chosen by a hash of the name), so
// that logging through g.Log() there would wait forever.
func startupLogger() *glog.Logger {
	return glog.Instance()
}

// sessionDurationKeys are the server keys of session durations, which gf
// reads as nanoseconds when they are bare numbers.
var sessionDurationKeys = []string{"SessionMaxAge", "SessionCookieMaxAge"}

// checkSessionDurations refuses a bare number (an int, a float or a string
// of digits; not a time.Duration from code, and not 0) for
// `sessionMaxAge` or `sessionCookieMaxAge`. gf reads it as nanoseconds,
// so `sessionMaxAge: 86400`, meant as a day, expires every session at once;
// a bare number too large for that, such as 86400000000000 (a day in
// nanoseconds), is refused as well: the same value reads as seconds in most
// tools, and a unit costs nothing. The error names the key, what gf would
// use and a fix.
func checkSessionDurations(m map[string]any) error {
	for _, field := range sessionDurationKeys {
		key, value := gutil.MapPossibleItemByKey(m, field)
		if key == "" {
			continue
		}
		n, ok := bareNumber(value)
		if !ok || n == 0 {
			continue
		}
		var (
			gfReads = gconv.Duration(value)
			fix     = suggestDuration(n, gfReads)
		)
		if gfReads < time.Second {
			what := "every session expires at once"
			if field == "SessionCookieMaxAge" {
				what = "browsers drop the session cookie at once and nobody stays logged in"
			}
			return gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: %v has no unit, and gf reads a bare number as nanoseconds: %v, so %s; write it with a unit, e.g. %q`,
				serverNode, key, value, gfReads, what, fix)
		}
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s.%s: %v has no unit; gf reads a bare number as nanoseconds (%v), most tools as seconds: write it with a unit, e.g. %q`,
			serverNode, key, value, gfReads, fix)
	}
	return nil
}

// bareNumber returns the value of `value` when it is a number without a
// unit: an int, a uint, a float or a string of one, but not a time.Duration.
func bareNumber(value any) (float64, bool) {
	if _, ok := value.(time.Duration); ok || value == nil {
		return 0, false
	}
	rv := reflect.ValueOf(value)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	case reflect.String:
		s := strings.TrimSpace(rv.String())
		if !isNumber(s) {
			return 0, false
		}
		n, err := strconv.ParseFloat(s, 64)
		return n, err == nil
	}
	return 0, false
}

// suggestDuration writes the duration a bare number `n` most likely meant:
// what gf reads, `gfReads`, when that is a second or more, else `n`
// seconds; "24h" when neither is a sensible duration.
func suggestDuration(n float64, gfReads time.Duration) string {
	d := gfReads
	if d < time.Second {
		if n <= 0 || n*float64(time.Second) > math.MaxInt64 {
			return "24h"
		}
		d = time.Duration(n * float64(time.Second)).Round(time.Second)
	}
	if d <= 0 {
		return "24h"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// secureCookieDefaults gives the session cookie HttpOnly and SameSite=Lax
// unless the config sets them. gf has no option for the session cookie
// alone: it sends it with the server-wide `cookieHttpOnly`,
// `cookieSameSite` and `cookieSecure`, so the defaults apply to the other
// cookies that handlers set with Request.Cookie.Set as well (not to those
// set with Cookie.SetCookie, which take their own options). A key the map
// leaves out changes only while it holds gf's default, so a value set by an
// earlier config of the same server stays.
//
// It also lower-cases `cookieSameSite`, which gf reads only in lower case
// ("Lax" would silently mean no SameSite at all), refuses a value gf does
// not know, and warns when the session cookie would be readable by scripts
// (`cookieHttpOnly: false`) or be refused by browsers (`cookieSameSite:
// none` without `cookieSecure: true`). `cookieSecure` stays the
// application's choice: it is right exactly when every request reaches the
// browser over HTTPS.
func secureCookieDefaults(ctx context.Context, m map[string]any, c *ghttp.ServerConfig) error {
	if key, value := gutil.MapPossibleItemByKey(m, "CookieSameSite"); key == "" {
		if c.CookieSameSite == "" {
			c.CookieSameSite = "lax"
		}
	} else {
		sameSite := strings.ToLower(strings.TrimSpace(gconv.String(value)))
		switch sameSite {
		case "lax", "strict", "none", "":
			c.CookieSameSite = sameSite
		default:
			return gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: unknown value %q; valid: "lax", "strict", "none"`, serverNode, key, gconv.String(value))
		}
	}
	httpOnlyKey, _ := gutil.MapPossibleItemByKey(m, "CookieHttpOnly")
	if httpOnlyKey == "" && !c.CookieHttpOnly {
		c.CookieHttpOnly = true
	}
	if !c.SessionCookieOutput {
		return nil
	}
	if !c.CookieHttpOnly {
		if httpOnlyKey == "" {
			httpOnlyKey = "cookieHttpOnly"
		}
		startupLogger().Warningf(ctx,
			`gfsession: %s.%s is false: scripts on the page can read the session cookie %q, so one cross-site scripting flaw leaks logins; remove the key (gfsession then sets HttpOnly) or set it to true`,
			serverNode, httpOnlyKey, c.SessionIdName)
	}
	if c.CookieSameSite == "none" && !c.CookieSecure {
		startupLogger().Warningf(ctx,
			`gfsession: %s.cookieSameSite is "none" without cookieSecure: browsers refuse such a cookie, so the session cookie %q is never stored; set cookieSecure: true (served over HTTPS) or use "lax"`,
			serverNode, c.SessionIdName)
	}
	return nil
}

// serverName returns the name the server configured by `m` will have when
// it starts, which gf joins to sessionPath for its session files: the
// `name` key, else the name the target config `c` already has (a server
// from ghttp.GetServer(name) that was named), else the name of the config
// node `m` comes from. g.Server(name) applies the node "server.<name>"
// before it names the server, so while the hook runs `c` still has gf's
// default name.
func serverName(ctx context.Context, m map[string]any, c *ghttp.ServerConfig) string {
	if key, _ := gutil.MapPossibleItemByKey(m, "Name"); key != "" || c.Name != ghttp.DefaultServerName {
		if c.Name == "" {
			return ghttp.DefaultServerName
		}
		return c.Name
	}
	if name := configNodeName(ctx, m); name != "" {
		return name
	}
	return c.Name
}

// configNodeName returns the name of the node "server.<name>" of the config
// file that holds the server config `m`, or "" when none or several do. It
// looks where g.Server does: under "server", else under "httpserver".
func configNodeName(ctx context.Context, m map[string]any) string {
	if !g.Cfg().Available(ctx) {
		return ""
	}
	data, err := g.Cfg().Data(ctx)
	if err != nil {
		return ""
	}
	key, node := gutil.MapPossibleItemByKey(data, "server")
	if key == "" {
		_, node = gutil.MapPossibleItemByKey(data, "httpserver")
	}
	servers, _ := node.(map[string]any)
	var found []string
	for name, sub := range servers {
		if subMap, ok := sub.(map[string]any); ok && sameServerConfig(subMap, m) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// serverSizeKeys are the keys Server.SetConfigWithMap rewrites (from "1m"
// to a number of bytes) before converting the map.
var serverSizeKeys = []string{"MaxHeaderBytes", "ClientMaxBodySize", "FormParsingMemory"}

// sameServerConfig reports whether `m`, the map the hook was given, is the
// config node `node`, as Server.SetConfigWithMap passes it on: a shallow
// copy, with the size keys rewritten.
func sameServerConfig(node, m map[string]any) bool {
	if len(node) != len(m) {
		return false
	}
	sizeKeys := make(map[string]bool, len(serverSizeKeys))
	for _, k := range serverSizeKeys {
		if key, _ := gutil.MapPossibleItemByKey(node, k); key != "" {
			sizeKeys[key] = true
		}
	}
	for k, v := range node {
		mv, ok := m[k]
		if !ok {
			return false
		}
		if !sizeKeys[k] && !reflect.DeepEqual(v, mv) {
			return false
		}
	}
	return true
}
