package gfsession

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/os/gtime"
	"github.com/gogf/gf/v2/util/gconv"
)

// decodeConfig fills the struct pointed to by `out` from the config map `m`.
// Keys match the fields' json tags, ignoring case. A key that matches no
// field is an error naming `path`.key and listing the valid keys, unless it is
// one of `extraKeys` (matched the same way): those are returned in `rest` for
// the caller to handle.
//
// Values are converted strictly: time.Duration needs a string with a unit
// ("24h", "500ms"; gf's "1d" works too) and rejects bare numbers, which gf
// would read as nanoseconds, and negative values unless the field is tagged
// `config:"negative"`: intervals, where a negative value disables the
// background work (and so does "off", in any case), and timeouts, where it
// means no bound (and so does "off"); [][]byte takes a list of base64
// strings (the `cryptoKeys` option); a pointer field (*bool) is set to a new
// value; the other kinds go through gconv and must convert without loss.
func decodeConfig(path string, m map[string]any, out any, extraKeys ...string) (rest map[string]any, err error) {
	rest, err = decodeFields(path, m, out)
	if err != nil || len(rest) == 0 {
		return nil, err
	}
	extra := make(map[string]bool, len(extraKeys))
	for _, k := range extraKeys {
		extra[strings.ToLower(k)] = true
	}
	for key := range rest {
		if !extra[strings.ToLower(key)] {
			valid := append(configKeys(reflect.TypeOf(out).Elem()), extraKeys...)
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: unknown key; valid keys: %s`, path, key, strings.Join(valid, ", "))
		}
	}
	return rest, nil
}

// decodeFields sets the fields of the struct pointed to by `out` that the
// keys of `m` name (see decodeConfig), and returns the other keys of `m`,
// nil when there are none. An error names `path`.key.
func decodeFields(path string, m map[string]any, out any) (rest map[string]any, err error) {
	rv := reflect.ValueOf(out).Elem()
	fields := configFields(rv.Type())
	for key, value := range m {
		i, ok := fields[strings.ToLower(key)]
		if !ok {
			if rest == nil {
				rest = make(map[string]any)
			}
			rest[key] = value
			continue
		}
		negative := rv.Type().Field(i).Tag.Get("config") == "negative"
		if err = setField(rv.Field(i), value, negative); err != nil {
			if _, tail, ok := leadingKey(err.Error(), map[string]any{key: nil}); ok {
				// "cryptoKeys[1]: ..." already names the key.
				return nil, &keyError{msg: path + "." + key + tail, err: err}
			}
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, path, key)
		}
	}
	return rest, nil
}

// configFields maps the lower-cased json names of the fields of struct type
// `t` to the fields' indexes. Fields without a json name are left out.
func configFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := configKey(t.Field(i)); name != "" {
			fields[strings.ToLower(name)] = i
		}
	}
	return fields
}

// configKeys returns the sorted json names of the fields of struct type `t`.
func configKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name := configKey(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// configKey returns the config key of field `f`, its json name, or "" for
// none.
func configKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	keysType     = reflect.TypeOf([][]byte(nil))
)

// setField sets `f` to the config value `value`; `negative` allows a
// negative duration, and "off" for it (see decodeConfig). The error does not
// name the key.
func setField(f reflect.Value, value any, negative bool) error {
	switch f.Type() {
	case durationType:
		return setDuration(f, value, negative)
	case keysType:
		return setCryptoKeys(f, value)
	}
	switch f.Kind() {
	case reflect.Pointer:
		v := reflect.New(f.Type().Elem())
		if err := setField(v.Elem(), value, negative); err != nil {
			return err
		}
		f.Set(v)
		return nil
	case reflect.String:
		return setString(f, value)
	case reflect.Bool:
		return setBool(f, value)
	case reflect.Int, reflect.Int64, reflect.Int32:
		return setInt(f, value)
	case reflect.Slice:
		if f.Type().Elem().Kind() == reflect.String {
			list, err := stringList(value, "strings")
			if err == nil {
				f.Set(reflect.ValueOf(list))
			}
			return err
		}
	}
	return gerror.Newf(`unsupported option type %s`, f.Type())
}

// setDuration sets the duration `f` (see parseDuration). With `negative` it
// takes a negative value, and "off" (any case) as -1ns; else a negative value
// is an error.
func setDuration(f reflect.Value, value any, negative bool) error {
	if s, ok := value.(string); ok && negative && strings.EqualFold(strings.TrimSpace(s), "off") {
		f.SetInt(-1)
		return nil
	}
	d, err := parseDuration(value)
	if err != nil {
		return err
	}
	if d < 0 && !negative {
		return gerror.New(negativeText(d))
	}
	f.SetInt(int64(d))
	return nil
}

// setCryptoKeys sets `f` to the keys of a list of base64 strings (see
// ParseCryptoKeys).
func setCryptoKeys(f reflect.Value, value any) error {
	encoded, err := stringList(value, "base64 strings")
	if err != nil {
		return err
	}
	keys, err := ParseCryptoKeys(encoded)
	if err != nil {
		return err
	}
	f.Set(reflect.ValueOf(keys))
	return nil
}

// setString sets `f` to a string (or a fmt.Stringer's string).
func setString(f reflect.Value, value any) error {
	switch value.(type) {
	case string, fmt.Stringer:
	default:
		return gerror.Newf(`want a string, got %v (%T)`, value, value)
	}
	f.SetString(gconv.String(value))
	return nil
}

// setBool sets `f` to a bool, or a string true, yes, on, 1 or false, no,
// off, 0 (any case).
func setBool(f reflect.Value, value any) error {
	switch v := value.(type) {
	case bool:
		f.SetBool(v)
	case string:
		switch strings.ToLower(v) {
		case "true", "yes", "on", "1":
			f.SetBool(true)
		case "false", "no", "off", "0":
			f.SetBool(false)
		default:
			return gerror.Newf(`want true or false, got %q`, v)
		}
	default:
		return gerror.Newf(`want true or false, got %v (%T)`, value, value)
	}
	return nil
}

// setInt sets `f` to a whole number >= 0, given as a number or a string.
func setInt(f reflect.Value, value any) error {
	s := gconv.String(value)
	i := gconv.Int64(value)
	if gconv.String(i) != strings.TrimSpace(s) {
		return gerror.Newf(`want a whole number, got %q`, s)
	}
	if i < 0 {
		return gerror.New(negativeText(i))
	}
	f.SetInt(i)
	return nil
}

// negativeText words the error for a negative value `v` (a number or a
// time.Duration) of an option that takes none, the same for a config map
// (decodeConfig) and for a config struct (the storages' normalize methods).
func negativeText(v any) string {
	if d, ok := v.(time.Duration); ok {
		return fmt.Sprintf(`%v is negative`, d)
	}
	return fmt.Sprintf(`want a number >= 0, got %v`, v)
}

// configError returns the error, CodeInvalidConfiguration, for option `key`
// of a config struct of storage type `typ`, worded as "gfsession: <typ>
// storage: <key>: <format, args>".
func configError(typ, key, format string, args ...any) error {
	return gerror.NewCodef(gcode.CodeInvalidConfiguration, "gfsession: %s storage: %s: %s", typ, key, fmt.Sprintf(format, args...))
}

// storageError prefixes `err`, whose message starts with the option it is
// about ("codec: ...", "path: ..."), with "gfsession: <typ> storage: ". It
// keeps the code of `err`, CodeInvalidConfiguration when it has none, and
// returns nil for a nil `err`.
func storageError(typ string, err error) error {
	if err == nil {
		return nil
	}
	code := gerror.Code(err)
	if code == gcode.CodeNil {
		code = gcode.CodeInvalidConfiguration
	}
	return gerror.WrapCodef(code, err, "gfsession: %s storage", typ)
}

// notNegative returns the error for option `key` of storage type `typ` when
// `v` is negative (see negativeText), else nil.
func notNegative[T ~int | ~int64](typ, key string, v T) error {
	if v >= 0 {
		return nil
	}
	return configError(typ, key, "%s", negativeText(v))
}

// newStorageEnvelope returns the envelope for `codec` and `keys` of a storage
// of type `typ`; an error names the option, "gfsession: <typ> storage:
// codec: ..." or "...: cryptoKeys[1]: ...".
func newStorageEnvelope(typ, codec string, keys [][]byte) (*envelope, error) {
	env, err := newEnvelope(codec, keys)
	if err != nil {
		return nil, storageError(typ, err)
	}
	return env, nil
}

// orDefault returns `v`, or `def` when `v` is 0.
func orDefault[T ~int | ~int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// configFactory returns the Factory of a storage whose config map decodes
// into a C (see decodeConfig): the keys `extraKeys` are left to `build`, in
// `rest`, which builds the storage from the decoded config.
func configFactory[C any](build func(ctx context.Context, config C, rest map[string]any) (gsession.Storage, error), extraKeys ...string) Factory {
	return func(ctx context.Context, m map[string]any) (gsession.Storage, error) {
		var config C
		rest, err := decodeConfig(configPath, m, &config, extraKeys...)
		if err != nil {
			return nil, err
		}
		return build(ctx, config, rest)
	}
}

// stringList reads a list option: a single string or a list whose items
// are all strings; `what` names the items in errors.
func stringList(value any, what string) ([]string, error) {
	switch v := value.(type) {
	case string:
		return []string{v}, nil
	case []string:
		return v, nil
	case []any:
		list := make([]string, 0, len(v))
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, gerror.Newf(`want a list of %s, got an item of type %T`, what, item)
			}
			list = append(list, s)
		}
		return list, nil
	}
	return nil, gerror.Newf(`want a list of %s, got %T`, what, value)
}

// parseDuration reads a duration option: a string with a unit, or a
// time.Duration from code. A bare number is refused: gf would read 86400 as
// 86.4µs, which is never what was meant.
func parseDuration(value any) (time.Duration, error) {
	switch v := value.(type) {
	case time.Duration:
		return v, nil
	case string:
		s := strings.TrimSpace(v)
		if s == "0" {
			return 0, nil
		}
		if isNumber(s) {
			return 0, gerror.Newf(`%q has no unit; write it with one, e.g. "%ss" or "24h"`, s, s)
		}
		d, err := gtime.ParseDuration(s)
		if err != nil {
			return 0, gerror.Newf(`%q is not a duration; write it like "30m", "24h" or "500ms"`, s)
		}
		return d, nil
	}
	s := gconv.String(value)
	if isNumber(s) {
		if s == "0" {
			return 0, nil
		}
		return 0, gerror.Newf(`%s has no unit; write it as a string with one, e.g. "%ss" or "24h"`, s, s)
	}
	return 0, gerror.Newf(`want a duration like "24h", got %v (%T)`, value, value)
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot:
			dot = true
		case (c == '-' || c == '+') && i == 0 && len(s) > 1:
		default:
			return false
		}
	}
	return true
}

// keyError is a config error whose message starts with the full name of the
// key it is about ("server.sessionStorage.codec: ..."), wrapping the error
// it was made from, whose code and stack it keeps.
type keyError struct {
	msg string
	err error
}

func (e *keyError) Error() string { return e.msg }

// Unwrap returns the error the message was made from.
func (e *keyError) Unwrap() error { return e.err }

// Code returns the code of the wrapped error, or CodeInvalidConfiguration
// when it has none.
func (e *keyError) Code() gcode.Code {
	if code := gerror.Code(e.err); code != gcode.CodeNil {
		return code
	}
	return gcode.CodeInvalidConfiguration
}

// Stack returns the stack of the wrapped error.
func (e *keyError) Stack() string { return gerror.Stack(e.err) }

// prefixError returns `err` with `prefix` put before its message, e.g. the
// "server." of a storage configured in the server node.
func prefixError(prefix string, err error) error {
	return &keyError{msg: prefix + err.Error(), err: err}
}

// keyedError makes the message of `err`, returned by a storage factory for
// the config node `path` with the options `config`, start with the key it
// is about: "path.key: ..." when, past a "gfsession: " and a "<type>
// storage: " prefix, it starts with the name of one of the given options
// ("gfsession: file storage: codec: unknown codec" becomes
// "sessionStorage.codec: unknown codec"), else "path: ...". A message that
// already starts with `path` is kept.
func keyedError(path string, config map[string]any, err error) error {
	text := err.Error()
	msg := trimStoragePrefix(strings.TrimPrefix(text, "gfsession: "))
	if hasKeyPrefix(msg, path) && !strings.HasPrefix(msg, path+": ") {
		// Already "path.key: ...".
	} else {
		bare := strings.TrimPrefix(msg, path+": ")
		if key, rest, ok := leadingKey(bare, config); ok {
			msg = path + "." + key + rest
		} else {
			msg = path + ": " + bare
		}
	}
	if msg == text {
		return err
	}
	return &keyError{msg: msg, err: err}
}

// trimStoragePrefix returns `msg` without its leading "<type> storage: ",
// the prefix of the storages' own errors (see configError), if it has one.
func trimStoragePrefix(msg string) string {
	typ, rest, ok := strings.Cut(msg, " storage: ")
	if !ok || typ == "" || strings.ContainsAny(typ, " :") {
		return msg
	}
	return rest
}

// leadingKey returns the key of `config` that `msg` starts with, followed by
// a colon or an index ("codec: ...", "cryptoKeys[1]: ..."), spelled as in
// `config`, and the rest of `msg`.
func leadingKey(msg string, config map[string]any) (key, rest string, ok bool) {
	end := 0
	for end < len(msg) && (msg[end] == '_' || msg[end] >= 'a' && msg[end] <= 'z' ||
		msg[end] >= 'A' && msg[end] <= 'Z' || msg[end] >= '0' && msg[end] <= '9') {
		end++
	}
	if end == 0 || end == len(msg) || msg[end] != ':' && msg[end] != '[' {
		return "", "", false
	}
	for k := range config {
		if strings.EqualFold(k, msg[:end]) {
			return k, msg[end:], true
		}
	}
	return "", "", false
}

// hasKeyPrefix reports whether `msg` starts with the key `path`, alone or
// followed by a sub-key (".x", "[0]") and a colon.
func hasKeyPrefix(msg, path string) bool {
	if !strings.HasPrefix(msg, path) {
		return false
	}
	rest := msg[len(path):]
	return rest == "" || rest[0] == ':' || rest[0] == '.' || rest[0] == '['
}
