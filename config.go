package gfsession

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
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
// `config:"negative"` (intervals, where a negative value disables); [][]byte takes a list of base64 strings (the
// `cryptoKeys` option); the other kinds go through gconv and must convert
// without loss.
func decodeConfig(path string, m map[string]any, out any, extraKeys ...string) (rest map[string]any, err error) {
	rv := reflect.ValueOf(out).Elem()
	rt := rv.Type()
	fields := make(map[string]int, rt.NumField())
	var valid []string
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[strings.ToLower(name)] = i
		valid = append(valid, name)
	}
	extra := make(map[string]bool, len(extraKeys))
	for _, k := range extraKeys {
		extra[strings.ToLower(k)] = true
	}
	sort.Strings(valid)
	for key, value := range m {
		lower := strings.ToLower(key)
		i, ok := fields[lower]
		if !ok {
			if extra[lower] {
				if rest == nil {
					rest = make(map[string]any)
				}
				rest[key] = value
				continue
			}
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: unknown key; valid keys: %s`, path, key, strings.Join(append(valid, extraKeys...), ", "))
		}
		if err = setField(rv.Field(i), value); err != nil {
			if _, rest, ok := leadingKey(err.Error(), map[string]any{key: nil}); ok {
				// "cryptoKeys[1]: ..." already names the key.
				return nil, &keyError{msg: path + "." + key + rest, err: err}
			}
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, path, key)
		}
		if d, ok := rv.Field(i).Interface().(time.Duration); ok && d < 0 && rt.Field(i).Tag.Get("config") != "negative" {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration, `%s.%s: %q is negative`, path, key, gconv.String(value))
		}
	}
	return rest, nil
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	keysType     = reflect.TypeOf([][]byte(nil))
)

func setField(f reflect.Value, value any) error {
	switch f.Type() {
	case durationType:
		d, err := parseDuration(value)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	case keysType:
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
	switch f.Kind() {
	case reflect.String:
		switch value.(type) {
		case string, fmt.Stringer:
		default:
			return gerror.Newf(`want a string, got %v (%T)`, value, value)
		}
		f.SetString(gconv.String(value))
	case reflect.Bool:
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
	case reflect.Int, reflect.Int64, reflect.Int32:
		s := gconv.String(value)
		i := gconv.Int64(value)
		if gconv.String(i) != strings.TrimSpace(s) {
			return gerror.Newf(`want a whole number, got %q`, s)
		}
		if i < 0 {
			return gerror.Newf(`want a number >= 0, got %d`, i)
		}
		f.SetInt(i)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return gerror.Newf(`unsupported option type %s`, f.Type())
		}
		list, err := stringList(value, "strings")
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(list))
	default:
		return gerror.Newf(`unsupported option type %s`, f.Type())
	}
	return nil
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
// is about: "path.key: ..." when it starts with the name of one of the
// given options ("codec: unknown codec" becomes "sessionStorage.codec:
// unknown codec"), else "path: ...". A message that already starts with
// `path` is kept.
func keyedError(path string, config map[string]any, err error) error {
	text := err.Error()
	msg := strings.TrimPrefix(text, "gfsession: ")
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
