package gfsession

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gtime"
)

// Codec names accepted by the `codec` option.
const (
	// CodecBinary is the default: a compact tagged encoding that gives back
	// every value with its Go type: bool, string, all int and uint widths at
	// full precision, float32/float64, []byte as bytes, time.Time with its
	// instant and offset, *gtime.Time, map[string]any, []any and []string.
	// Other values come back as the nearest of those: a named basic type as
	// its kind (time.Duration as int64, a named string as string), a pointer
	// as what it points to, other slices and arrays as []any, other maps as
	// map[string]any (integer keys as decimal text), a value with a text form
	// (encoding.TextMarshaler on the value or its pointer: *big.Int,
	// big.Float, netip.Addr, a UUID) as that text, and structs and other
	// values with MarshalJSON as their JSON read back into maps, lists,
	// strings and numbers (readable with gvar.Struct or Scan).
	//
	// A write is refused, with an error naming the session key, when a value
	// would not come back so: nested deeper than MaxValueDepth, a channel,
	// func or complex number, a cycle, a struct with no exported field, a
	// number its JSON cannot hold exactly, or a string inside JSON that is
	// not UTF-8.
	CodecBinary = "binary"
	// CodecJSON stores plain JSON, for sites where other programs read the
	// sessions. Numbers come back as int64 when integral (uint64 above its
	// range), else float64; []byte as base64 text; time.Time and *gtime.Time
	// as RFC 3339 text; everything else as CodecBinary stores structs. A
	// write is refused as with CodecBinary, and also for NaN and infinities
	// and for any string that is not UTF-8.
	CodecJSON = "json"

	// DefaultCodec is the codec used when none is configured.
	DefaultCodec = CodecBinary

	// MaxValueDepth is how many maps, slices, arrays and structs may nest
	// inside one another in one session value ([]any{[]any{1}} nests 2). A
	// write of a deeper value is refused.
	MaxValueDepth = maxDepth - 1
)

const (
	codecIdBinary = 1
	codecIdJSON   = 2

	// maxDepth is the nesting limit of encoding and decoding: every value,
	// leaves included, lies at most maxDepth levels below the session map.
	maxDepth = 64
	// maxHops bounds the pointers and interfaces followed in a row, without
	// a map or list in between (a pointer cycle).
	maxHops = maxDepth
)

// errCorrupt is the error for stored data that cannot be decoded.
func errCorrupt(reason string) error {
	return gerror.NewCodef(gcode.CodeInvalidParameter, "corrupt session data: %s", reason)
}

// errTooDeep is the error for a value the decoder would refuse as nested
// too deep.
func errTooDeep() error {
	return gerror.NewCodef(gcode.CodeInvalidParameter, "value nested deeper than %d levels", MaxValueDepth)
}

// errUnstorable is the error for a value of type `t` that cannot be stored
// so that it comes back, because of `reason`.
func errUnstorable(t reflect.Type, reason string) error {
	return gerror.NewCodef(gcode.CodeInvalidParameter, "value of type %v cannot be stored: %s", t, reason)
}

// errKey names session key `key` in `err`, an error of encoding its value.
func errKey(key string, err error) error {
	return gerror.WrapCodef(gcode.CodeInvalidParameter, err, "session key %q", key)
}

// valueCodec encodes and decodes whole sessions and single session values.
// Its encoder and decoder accept exactly the same values: what the encoder
// accepts decodes, what it cannot store so is refused by the encoder.
type valueCodec interface {
	id() byte
	// encodeMap appends the stored form of a whole session `data`; an error
	// names the session key whose value cannot be stored.
	encodeMap(dst []byte, data map[string]any) ([]byte, error)
	// encode appends the stored form of `v`, one session value.
	encode(dst []byte, v any) ([]byte, error)
	// decode decodes what encodeMap wrote (any value at the top, so that
	// corrupt data is told from a session). It takes the stored form as a
	// string: backends read strings (go-redis replies) or make one copy of
	// what they read, and decoded strings can then share it instead of
	// being copied one by one.
	decode(s string) (any, error)
	// decodeValue decodes what encode wrote.
	decodeValue(s string) (any, error)
}

func codecByName(name string) (valueCodec, error) {
	switch name {
	case "", CodecBinary:
		return binaryCodec{}, nil
	case CodecJSON:
		return jsonCodec{}, nil
	}
	return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`codec: unknown codec %q, valid: %q, %q`, name, CodecBinary, CodecJSON)
}

func codecById(id byte) valueCodec {
	switch id {
	case codecIdBinary:
		return binaryCodec{}
	case codecIdJSON:
		return jsonCodec{}
	}
	return nil
}

// ---------------------------------------------------------------------------
// what both encoders share

// storedForm is how the encoders store a value of a type that their fast
// paths do not know.
type storedForm uint8

const (
	byKind    storedForm = iota // by its reflect.Kind
	asText                      // as the text of its MarshalText: a string
	asJSON                      // as its JSON (MarshalJSON, or a struct's fields)
	asNothing                   // refused: a struct whose JSON would be {}
)

var (
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	storageOfType     sync.Map // reflect.Type -> storedForm
)

// storedAs returns how a value of type `t` is stored. A text form wins
// over MarshalJSON, and methods of *T count for a T: stored from an
// addressable copy, a big.Int keeps its digits and a big.Float its text.
func storedAs(t reflect.Type) storedForm {
	if s, ok := storageOfType.Load(t); ok {
		return s.(storedForm)
	}
	s := byKind
	implements := func(iface reflect.Type) bool {
		return t.Implements(iface) ||
			(t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(iface))
	}
	switch {
	case implements(textMarshalerType):
		s = asText
	case implements(jsonMarshalerType):
		s = asJSON
	case t.Kind() == reflect.Struct:
		s = asNothing
		if t.NumField() == 0 {
			s = asJSON
		}
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() || f.Anonymous {
				s = asJSON
				break
			}
		}
	}
	storageOfType.Store(t, s)
	return s
}

func isNil(rv reflect.Value) bool {
	k := rv.Kind()
	return (k == reflect.Pointer || k == reflect.Interface) && rv.IsNil()
}

// pointerTo returns a pointer to `rv`, or to a copy of it when it is not
// addressable, so that methods of its pointer type apply.
func pointerTo(rv reflect.Value) reflect.Value {
	if rv.CanAddr() {
		return rv.Addr()
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	return p
}

// marshalText returns the text form of `rv` (storedAs asText, not nil).
func marshalText(rv reflect.Value) ([]byte, error) {
	if !rv.Type().Implements(textMarshalerType) {
		rv = pointerTo(rv)
	}
	text, err := rv.Interface().(encoding.TextMarshaler).MarshalText()
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidParameter, err, "value of type %v cannot be stored: MarshalText", rv.Type())
	}
	return text, nil
}

// marshalJSON returns the JSON of `rv` (storedAs asJSON, not nil), a value
// at nesting `depth`, after checking that decodeJSONAt gives it back as it
// is (see checkJSON).
func marshalJSON(rv reflect.Value, depth int) ([]byte, error) {
	t := rv.Type()
	if rv.Kind() != reflect.Pointer {
		// Fields and elements of an addressable value use the methods of
		// their pointer types, as they do for json.Marshal(&v).
		rv = pointerTo(rv)
	}
	b, err := json.Marshal(rv.Interface())
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidParameter, err, "value of type %v cannot be stored as JSON", t)
	}
	if err = checkJSON(b, depth); err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidParameter, err, "value of type %v", t)
	}
	return b, nil
}

// checkJSON checks that JSON `b`, as encoding/json writes it, for a value
// at nesting `depth`, decodes (decodeJSONAt) to what it says: no value
// nested deeper than maxDepth, no number that would come back as another
// number, and no string encoding/json had to change because it was not
// UTF-8 (it writes such bytes as \ufffd).
func checkJSON(b []byte, depth int) error {
	d := depth
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case ' ', '\t', '\r', '\n', ',', ':':
			i++
		case '}', ']':
			d--
			i++
		default:
			// A value starts here (or a key, at the depth of its value).
			if d > maxDepth {
				return errTooDeep()
			}
			switch {
			case c == '{' || c == '[':
				d++
				i++
			case c == '"':
				j := i + 1
				for ; j < len(b) && b[j] != '"'; j++ {
					if b[j] == '\\' {
						if bytes.HasPrefix(b[j:], []byte(`\ufffd`)) {
							return gerror.NewCode(gcode.CodeInvalidParameter, "it holds a string that is not UTF-8")
						}
						j++
					}
				}
				i = j + 1
			case c == '-' || c >= '0' && c <= '9':
				j := i + 1
				for j < len(b) && strings.IndexByte("+-.eE0123456789", b[j]) >= 0 {
					j++
				}
				if err := checkNumber(string(b[i:j])); err != nil {
					return err
				}
				i = j
			default: // true, false, null
				j := i + 1
				for j < len(b) && b[j] >= 'a' && b[j] <= 'z' {
					j++
				}
				i = j
			}
		}
	}
	return nil
}

// checkNumber checks that JSON number `s` decodes (fixNumbers) to a number
// of the same value: an integer in the range of int64 or uint64, or a
// float64 whose shortest form is the same decimal.
func checkNumber(s string) error {
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return nil
	}
	if _, ok := parseUint(s); ok {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err == nil && sameDecimal(s, strconv.FormatFloat(f, 'e', -1, 64)) {
		return nil
	}
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return gerror.NewCodef(gcode.CodeInvalidParameter, "number %s would not come back exactly (a float64 holds about 16 digits)", s)
}

// sameDecimal reports whether `a` and `b`, numbers in JSON syntax, have the
// same value (a zero of either sign equals zero).
func sameDecimal(a, b string) bool {
	an, ad, ae, aok := decimalOf(a)
	bn, bd, be, bok := decimalOf(b)
	return aok && bok && an == bn && ad == bd && ae == be
}

// decimalOf returns number `s` (JSON syntax) as sign, significant digits
// (no leading or trailing zero) and power of ten; zero has no digits.
// Exponents beyond a billion saturate: no float64 reaches them.
func decimalOf(s string) (neg bool, digits string, exp int, ok bool) {
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	ds, frac, rest, ok := decimalMantissa(s)
	if !ok {
		return false, "", 0, false
	}
	e, ok := decimalExponent(rest)
	if !ok {
		return false, "", 0, false
	}
	exp = e - frac
	digits = strings.TrimLeft(ds, "0")
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	if digits == "" {
		return false, "", 0, true
	}
	return neg, digits, exp, true
}

// decimalMantissa splits `s`, a JSON number without its sign, into the
// digits of its integer and fraction parts, how many of them are the
// fraction's, and what follows them (the exponent part, if any). It is not
// ok for an integer part that is missing or has a leading zero, or a '.'
// with no digit after it.
func decimalMantissa(s string) (ds string, frac int, rest string, ok bool) {
	intPart, rest := leadingDigits(s)
	if intPart == "" || (intPart[0] == '0' && len(intPart) > 1) {
		return "", 0, "", false
	}
	if !strings.HasPrefix(rest, ".") {
		return intPart, 0, rest, true
	}
	fracPart, rest := leadingDigits(rest[1:])
	if fracPart == "" {
		return "", 0, "", false
	}
	return intPart + fracPart, len(fracPart), rest, true
}

// decimalExponent returns the power of ten of `s`, the exponent part of a
// JSON number ("e-7", "E+3", "e12", or "" for none), its magnitude
// saturating past a billion. It is not ok unless `s` is exactly that.
func decimalExponent(s string) (exp int, ok bool) {
	if s == "" {
		return 0, true
	}
	if s[0] != 'e' && s[0] != 'E' {
		return 0, false
	}
	s = s[1:]
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	ds, rest := leadingDigits(s)
	if ds == "" || rest != "" {
		return 0, false
	}
	for i := 0; i < len(ds); i++ {
		if exp < 1e9 {
			exp = exp*10 + int(ds[i]-'0')
		}
	}
	if neg {
		exp = -exp
	}
	return exp, true
}

// leadingDigits splits `s` into its leading ASCII digits and the rest.
func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// mapKeyText returns how the keys of map type `t` become text, as
// encoding/json makes them: strings as they are, then text forms, then
// integers in decimal. Other key types are refused.
func mapKeyText(t reflect.Type) (func(k reflect.Value) (string, error), error) {
	kt := t.Key()
	switch {
	case kt.Kind() == reflect.String:
		return func(k reflect.Value) (string, error) { return k.String(), nil }, nil
	case kt.Implements(textMarshalerType):
		return func(k reflect.Value) (string, error) {
			if isNil(k) {
				return "", nil
			}
			text, err := marshalText(k)
			return string(text), err
		}, nil
	}
	switch kt.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(k reflect.Value) (string, error) { return strconv.FormatInt(k.Int(), 10), nil }, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(k reflect.Value) (string, error) { return strconv.FormatUint(k.Uint(), 10), nil }, nil
	}
	return nil, errUnstorable(t, "its keys have no text form")
}

// keySet finds two keys of one map with the same text form: stored, one
// would silently replace the other. Only keys made text by MarshalText can
// collide; for other maps it is nil and does nothing.
type keySet map[string]struct{}

func newKeySet(m reflect.Value) keySet {
	if k := m.Type().Key(); k.Kind() == reflect.String || !k.Implements(textMarshalerType) {
		return nil
	}
	return make(keySet, m.Len())
}

func (s keySet) add(t reflect.Type, key string) error {
	if s == nil {
		return nil
	}
	if _, dup := s[key]; dup {
		return errUnstorable(t, "two keys have the same text form")
	}
	s[key] = struct{}{}
	return nil
}

// rangeMap calls `fn` with the text form of each key of map `m` and its
// value, in the map's order, and stops at the first error. It refuses a map
// whose keys have no text form, or two of whose keys have the same one.
func rangeMap(m reflect.Value, fn func(key string, value reflect.Value) error) error {
	keyText, err := mapKeyText(m.Type())
	if err != nil {
		return err
	}
	seen := newKeySet(m)
	iter := m.MapRange()
	for iter.Next() {
		k, err := keyText(iter.Key())
		if err != nil {
			return err
		}
		if err = seen.add(m.Type(), k); err != nil {
			return err
		}
		if err = fn(k, iter.Value()); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// binary codec

const (
	tagNil byte = iota
	tagFalse
	tagTrue
	tagInt
	tagInt8
	tagInt16
	tagInt32
	tagInt64
	tagUint
	tagUint8
	tagUint16
	tagUint32
	tagUint64
	tagFloat32
	tagFloat64
	tagString
	tagBytes
	tagTime
	tagGTime
	tagMap
	tagList
	tagStrings
	tagJSON
)

type binaryCodec struct{}

func (binaryCodec) id() byte { return codecIdBinary }

func (binaryCodec) encodeMap(dst []byte, data map[string]any) ([]byte, error) {
	dst = binary.AppendUvarint(append(dst, tagMap), uint64(len(data)))
	var err error
	for k, v := range data {
		dst = appendString(dst, k)
		if dst, err = encodeBinary(dst, v, 1, 0); err != nil {
			return nil, errKey(k, err)
		}
	}
	return dst, nil
}

func (binaryCodec) encode(dst []byte, v any) ([]byte, error) {
	return encodeBinary(dst, v, 1, 0)
}

func (binaryCodec) decode(s string) (any, error) { return decodeBinary(s, 0) }

func (binaryCodec) decodeValue(s string) (any, error) { return decodeBinary(s, 1) }

// decodeBinary decodes `s` as a value at nesting `depth`.
func decodeBinary(s string, depth int) (any, error) {
	d := binaryDecoder{s: s, share: len(s) <= maxSharedDecode}
	v, err := d.value(depth)
	if err != nil {
		return nil, err
	}
	if d.i != len(d.s) {
		return nil, errCorrupt("trailing bytes")
	}
	return v, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendTime appends `t` after `tag`. A zone offset beyond a day, which
// time.FixedZone allows, is refused: the decoder refuses it as corrupt.
func appendTime(dst []byte, tag byte, t time.Time) ([]byte, error) {
	name, offset := t.Zone()
	if offset < -24*3600 || offset > 24*3600 {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "time zone offset %ds is beyond a day", offset)
	}
	if t.Location() == time.UTC {
		name = "UTC"
	}
	dst = binary.AppendVarint(append(dst, tag), t.Unix())
	dst = binary.AppendUvarint(dst, uint64(t.Nanosecond()))
	dst = binary.AppendVarint(dst, int64(offset))
	return appendString(dst, name), nil
}

// encodeBinary appends `v`, a value at nesting `depth` reached through
// `hops` pointers or interfaces in a row. It refuses what the decoder
// would refuse (see binaryDecoder.value) or give back changed.
func encodeBinary(dst []byte, v any, depth, hops int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errTooDeep()
	}
	switch x := v.(type) {
	case nil:
		return append(dst, tagNil), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case int:
		return binary.AppendVarint(append(dst, tagInt), int64(x)), nil
	case int8:
		return binary.AppendVarint(append(dst, tagInt8), int64(x)), nil
	case int16:
		return binary.AppendVarint(append(dst, tagInt16), int64(x)), nil
	case int32:
		return binary.AppendVarint(append(dst, tagInt32), int64(x)), nil
	case int64:
		return binary.AppendVarint(append(dst, tagInt64), x), nil
	case uint:
		return binary.AppendUvarint(append(dst, tagUint), uint64(x)), nil
	case uint8:
		return binary.AppendUvarint(append(dst, tagUint8), uint64(x)), nil
	case uint16:
		return binary.AppendUvarint(append(dst, tagUint16), uint64(x)), nil
	case uint32:
		return binary.AppendUvarint(append(dst, tagUint32), uint64(x)), nil
	case uint64:
		return binary.AppendUvarint(append(dst, tagUint64), x), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(dst, tagFloat32), math.Float32bits(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, tagFloat64), math.Float64bits(x)), nil
	case string:
		return appendString(append(dst, tagString), x), nil
	case []byte:
		dst = binary.AppendUvarint(append(dst, tagBytes), uint64(len(x)))
		return append(dst, x...), nil
	case time.Time:
		return appendTime(dst, tagTime, x)
	case *time.Time:
		if x == nil {
			return append(dst, tagNil), nil
		}
		return appendTime(dst, tagTime, *x)
	case *gtime.Time:
		if x == nil {
			return append(dst, tagNil), nil
		}
		return appendTime(dst, tagGTime, x.Time)
	case gtime.Time:
		return appendTime(dst, tagGTime, x.Time)
	case *gvar.Var:
		if x == nil {
			return append(dst, tagNil), nil
		}
		if hops >= maxHops {
			return nil, errUnstorable(reflect.TypeOf(v), "a cycle or a chain of more than 64 pointers")
		}
		return encodeBinary(dst, x.Val(), depth, hops+1)
	case map[string]any:
		dst = binary.AppendUvarint(append(dst, tagMap), uint64(len(x)))
		var err error
		for k, item := range x {
			dst = appendString(dst, k)
			if dst, err = encodeBinary(dst, item, depth+1, 0); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case []any:
		dst = binary.AppendUvarint(append(dst, tagList), uint64(len(x)))
		var err error
		for _, item := range x {
			if dst, err = encodeBinary(dst, item, depth+1, 0); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case []string:
		dst = binary.AppendUvarint(append(dst, tagStrings), uint64(len(x)))
		for _, s := range x {
			dst = appendString(dst, s)
		}
		return dst, nil
	}
	return encodeBinaryReflect(dst, reflect.ValueOf(v), depth, hops)
}

// encodeBinaryReflect handles what the fast switch of encodeBinary does
// not: values with a text form are stored as that text, values with
// MarshalJSON and structs as JSON, pointers as what they point to, and
// other maps, slices, arrays and named basic types are walked, so their
// elements keep their types.
func encodeBinaryReflect(dst []byte, rv reflect.Value, depth, hops int) ([]byte, error) {
	switch how := storedAs(rv.Type()); how {
	case asText, asJSON:
		if isNil(rv) {
			return append(dst, tagNil), nil
		}
		if how == asText {
			text, err := marshalText(rv)
			if err != nil {
				return nil, err
			}
			return appendString(append(dst, tagString), string(text)), nil
		}
		return appendJSONValue(dst, rv, depth)
	case asNothing:
		return nil, errUnstorable(rv.Type(), "it has no exported field, so it would come back empty")
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(dst, tagNil), nil
		}
		if hops >= maxHops {
			return nil, errUnstorable(rv.Type(), "a cycle or a chain of more than 64 pointers")
		}
		return encodeBinary(dst, rv.Elem().Interface(), depth, hops+1)
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return encodeBinary(dst, rv.Bytes(), depth, hops)
		}
		fallthrough
	case reflect.Array:
		n := rv.Len()
		dst = binary.AppendUvarint(append(dst, tagList), uint64(n))
		var err error
		for i := 0; i < n; i++ {
			if dst, err = encodeBinary(dst, rv.Index(i).Interface(), depth+1, 0); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case reflect.Map:
		dst = binary.AppendUvarint(append(dst, tagMap), uint64(rv.Len()))
		err := rangeMap(rv, func(k string, v reflect.Value) (err error) {
			dst, err = encodeBinary(appendString(dst, k), v.Interface(), depth+1, 0)
			return err
		})
		if err != nil {
			return nil, err
		}
		return dst, nil
	case reflect.String:
		return appendString(append(dst, tagString), rv.String()), nil
	case reflect.Bool:
		return encodeBinary(dst, rv.Bool(), depth, hops)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(append(dst, tagInt64), rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return binary.AppendUvarint(append(dst, tagUint64), rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return encodeBinary(dst, rv.Float(), depth, hops)
	}
	return nil, errUnstorable(rv.Type(), "a "+rv.Kind().String()+" has no stored form")
}

// appendJSONValue appends `rv`, a struct or a value with MarshalJSON at
// nesting `depth`, as JSON.
func appendJSONValue(dst []byte, rv reflect.Value, depth int) ([]byte, error) {
	b, err := marshalJSON(rv, depth)
	if err != nil {
		return nil, err
	}
	dst = binary.AppendUvarint(append(dst, tagJSON), uint64(len(b)))
	return append(dst, b...), nil
}

// maxSharedDecode is the largest encoded value whose decoded strings are
// slices of it: no allocation per key and string. Past it each string is
// copied on its own, so that a short string kept from a large session does
// not keep the whole of it alive.
const maxSharedDecode = 16 << 10

// binaryDecoder reads the binary codec from a string. It never writes to
// what it reads.
type binaryDecoder struct {
	s       string
	i       int
	share   bool // decoded strings may be slices of s
	claimed int  // items of all maps and lists so far (see count)
}

// uvarint reads an unsigned varint as encoding/binary writes it.
func (d *binaryDecoder) uvarint() (uint64, error) {
	var v uint64
	for shift := uint(0); d.i < len(d.s) && shift < 64; shift += 7 {
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			if shift == 63 && c > 1 {
				break // overflows 64 bits
			}
			return v | uint64(c)<<shift, nil
		}
		v |= uint64(c&0x7f) << shift
	}
	return 0, errCorrupt("bad uvarint")
}

// varint reads a zig-zag signed varint as encoding/binary writes it.
func (d *binaryDecoder) varint() (int64, error) {
	u, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v, nil
}

// length reads a length or count and checks it against the bytes left, each
// item taking at least `min` bytes: no allocation is ever sized by a length
// the data could not hold.
func (d *binaryDecoder) length(min int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.s)-d.i)/uint64(min) {
		return 0, errCorrupt("length beyond end of data")
	}
	return int(n), nil
}

// count reads the number of items of a map or list, each taking at least
// `min` bytes. Besides what length checks, the items claimed by all the
// maps and lists of the input together may not outnumber its bytes (each
// item has a byte of its own): nested headers, each claiming the bytes
// left, cannot make the decoder allocate far more than the input's size.
func (d *binaryDecoder) count(min int) (int, error) {
	n, err := d.length(min)
	if err != nil {
		return 0, err
	}
	if d.claimed += n; d.claimed > len(d.s) {
		return 0, errCorrupt("more items than the data holds")
	}
	return n, nil
}

// raw reads a length-prefixed run of bytes, as a slice of s.
func (d *binaryDecoder) raw() (string, error) {
	n, err := d.length(1)
	if err != nil {
		return "", err
	}
	r := d.s[d.i : d.i+n]
	d.i += n
	return r, nil
}

func (d *binaryDecoder) string() (string, error) {
	r, err := d.raw()
	if err != nil || d.share {
		return r, err
	}
	return strings.Clone(r), nil
}

// fixed reads the next `n` bytes as a big-endian unsigned integer (n <= 8).
func (d *binaryDecoder) fixed(n int) (uint64, error) {
	if len(d.s)-d.i < n {
		return 0, errCorrupt("unexpected end of data")
	}
	var v uint64
	for _, c := range []byte(d.s[d.i : d.i+n]) {
		v = v<<8 | uint64(c)
	}
	d.i += n
	return v, nil
}

func (d *binaryDecoder) time() (time.Time, error) {
	sec, err := d.varint()
	if err != nil {
		return time.Time{}, err
	}
	nsec, err := d.uvarint()
	if err != nil {
		return time.Time{}, err
	}
	offset, err := d.varint()
	if err != nil {
		return time.Time{}, err
	}
	name, err := d.string()
	if err != nil {
		return time.Time{}, err
	}
	if nsec >= 1e9 || offset < -24*3600 || offset > 24*3600 {
		return time.Time{}, errCorrupt("bad time")
	}
	t := time.Unix(sec, int64(nsec))
	if name == "UTC" && offset == 0 {
		return t.UTC(), nil
	}
	if local := t.Local(); func() bool { n, o := local.Zone(); return n == name && o == int(offset) }() {
		return local, nil
	}
	return t.In(time.FixedZone(name, int(offset))), nil
}

func (d *binaryDecoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errCorrupt("nested too deep")
	}
	if d.i >= len(d.s) {
		return nil, errCorrupt("unexpected end of data")
	}
	tag := d.s[d.i]
	d.i++
	switch tag {
	case tagNil:
		return nil, nil
	case tagFalse:
		return false, nil
	case tagTrue:
		return true, nil
	case tagInt, tagInt8, tagInt16, tagInt32, tagInt64:
		v, err := d.varint()
		if err != nil {
			return nil, err
		}
		switch tag {
		case tagInt:
			return int(v), nil
		case tagInt8:
			return int8(v), nil
		case tagInt16:
			return int16(v), nil
		case tagInt32:
			return int32(v), nil
		}
		return v, nil
	case tagUint, tagUint8, tagUint16, tagUint32, tagUint64:
		v, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		switch tag {
		case tagUint:
			return uint(v), nil
		case tagUint8:
			return uint8(v), nil
		case tagUint16:
			return uint16(v), nil
		case tagUint32:
			return uint32(v), nil
		}
		return v, nil
	case tagFloat32:
		u, err := d.fixed(4)
		if err != nil {
			return nil, err
		}
		return math.Float32frombits(uint32(u)), nil
	case tagFloat64:
		u, err := d.fixed(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(u), nil
	case tagString:
		return d.string()
	case tagBytes:
		r, err := d.raw()
		if err != nil {
			return nil, err
		}
		return []byte(r), nil
	case tagTime, tagGTime:
		t, err := d.time()
		if err != nil {
			return nil, err
		}
		if tag == tagGTime {
			return gtime.NewFromTime(t), nil
		}
		return t, nil
	case tagMap:
		n, err := d.count(2)
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for j := 0; j < n; j++ {
			k, err := d.string()
			if err != nil {
				return nil, err
			}
			if m[k], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return m, nil
	case tagList:
		n, err := d.count(1)
		if err != nil {
			return nil, err
		}
		l := make([]any, n)
		for j := range l {
			if l[j], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return l, nil
	case tagStrings:
		n, err := d.count(1)
		if err != nil {
			return nil, err
		}
		l := make([]string, n)
		for j := range l {
			if l[j], err = d.string(); err != nil {
				return nil, err
			}
		}
		return l, nil
	case tagJSON:
		b, err := d.raw()
		if err != nil {
			return nil, err
		}
		// JSON nested in a binary value continues its depth: what decodes
		// must encode again within maxDepth.
		return decodeJSONAt(b, depth)
	}
	return nil, errCorrupt("unknown value tag")
}

// ---------------------------------------------------------------------------
// JSON codec

type jsonCodec struct{}

func (jsonCodec) id() byte { return codecIdJSON }

func (jsonCodec) encodeMap(dst []byte, data map[string]any) ([]byte, error) {
	return appendJSONObject(dst, data, 1, errKey)
}

// appendJSONObject appends map `m` as a JSON object with sorted keys, its
// values at nesting depth `depth`. `wrap`, when not nil, wraps the error of
// a key (a whole session names the key that failed).
func appendJSONObject(dst []byte, m map[string]any, depth int, wrap func(key string, err error) error) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendJSONString(dst, k); err == nil {
			dst, err = encodeJSON(append(dst, ':'), m[k], depth, 0)
		}
		if err != nil {
			if wrap != nil {
				err = wrap(k, err)
			}
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

func (jsonCodec) encode(dst []byte, v any) ([]byte, error) { return encodeJSON(dst, v, 1, 0) }

func (jsonCodec) decode(s string) (any, error) { return decodeJSON(s) }

func (jsonCodec) decodeValue(s string) (any, error) { return decodeJSONAt(s, 1) }

var (
	errNotUTF8     = gerror.NewCode(gcode.CodeInvalidParameter, "a string that is not UTF-8 has no JSON form")
	jsonNumberType = reflect.TypeFor[json.Number]()
)

// encodeJSON appends `v`, a value at nesting `depth` reached through `hops`
// pointers or interfaces in a row, as JSON: what json.Marshal writes,
// except that time.Time and *gtime.Time keep their instant and offset
// (RFC 3339), and that it refuses what decodeJSONAt would refuse or give
// back other than documented (CodecJSON).
func encodeJSON(dst []byte, v any, depth, hops int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errTooDeep()
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case float32:
		return appendJSONFloat(dst, float64(x), 32)
	case float64:
		return appendJSONFloat(dst, x, 64)
	case string:
		return appendJSONString(dst, x)
	case json.Number:
		if _, _, _, ok := decimalOf(string(x)); !ok {
			return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "json.Number %q is not a number", x)
		}
		if err := checkNumber(string(x)); err != nil {
			return nil, err
		}
		return append(dst, x...), nil
	case []byte:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = base64.StdEncoding.AppendEncode(append(dst, '"'), x)
		return append(dst, '"'), nil
	case time.Time:
		return appendJSONTime(dst, x)
	case *time.Time:
		if x == nil {
			return append(dst, "null"...), nil
		}
		return appendJSONTime(dst, *x)
	case *gtime.Time:
		if x == nil {
			return append(dst, "null"...), nil
		}
		return appendJSONTime(dst, x.Time)
	case gtime.Time:
		return appendJSONTime(dst, x.Time)
	case *gvar.Var:
		if x == nil {
			return append(dst, "null"...), nil
		}
		if hops >= maxHops {
			return nil, errUnstorable(reflect.TypeOf(v), "a cycle or a chain of more than 64 pointers")
		}
		return encodeJSON(dst, x.Val(), depth, hops+1)
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		return appendJSONObject(dst, x, depth+1, nil)
	case []any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		var err error
		for i, item := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = encodeJSON(dst, item, depth+1, 0); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	}
	return encodeJSONReflect(dst, reflect.ValueOf(v), depth, hops)
}

// encodeJSONReflect is encodeBinaryReflect for the JSON codec.
func encodeJSONReflect(dst []byte, rv reflect.Value, depth, hops int) ([]byte, error) {
	switch how := storedAs(rv.Type()); how {
	case asText, asJSON:
		if isNil(rv) {
			return append(dst, "null"...), nil
		}
		if how == asText {
			text, err := marshalText(rv)
			if err != nil {
				return nil, err
			}
			return appendJSONString(dst, string(text))
		}
		b, err := marshalJSON(rv, depth)
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	case asNothing:
		return nil, errUnstorable(rv.Type(), "it has no exported field, so it would come back empty")
	}
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		if hops >= maxHops {
			return nil, errUnstorable(rv.Type(), "a cycle or a chain of more than 64 pointers")
		}
		return encodeJSON(dst, rv.Elem().Interface(), depth, hops+1)
	case reflect.Slice:
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return encodeJSON(dst, rv.Bytes(), depth, hops)
		}
		fallthrough
	case reflect.Array:
		dst = append(dst, '[')
		var err error
		for i, n := 0, rv.Len(); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = encodeJSON(dst, rv.Index(i).Interface(), depth+1, 0); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case reflect.Map:
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		type entry struct {
			key   string
			value reflect.Value
		}
		entries := make([]entry, 0, rv.Len())
		err := rangeMap(rv, func(k string, v reflect.Value) error {
			entries = append(entries, entry{k, v})
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for i, e := range entries {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSONString(dst, e.key); err != nil {
				return nil, err
			}
			if dst, err = encodeJSON(append(dst, ':'), e.value.Interface(), depth+1, 0); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case reflect.String:
		if rv.Type() == jsonNumberType {
			return encodeJSON(dst, json.Number(rv.String()), depth, hops)
		}
		return appendJSONString(dst, rv.String())
	case reflect.Bool:
		return strconv.AppendBool(dst, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(dst, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(dst, rv.Uint(), 10), nil
	case reflect.Float32:
		return appendJSONFloat(dst, rv.Float(), 32)
	case reflect.Float64:
		return appendJSONFloat(dst, rv.Float(), 64)
	}
	return nil, errUnstorable(rv.Type(), "a "+rv.Kind().String()+" has no stored form")
}

// appendJSONFloat appends `f`, a float of `bits` bits, as encoding/json
// writes it: the shortest decimal that reads back as `f`, without an
// exponent from 1e-6 up to 1e21.
func appendJSONFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "%v has no JSON form", f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 32 {
			abs = float64(float32(abs))
		}
		if abs < 1e-6 || abs >= 1e21 {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 -> 1e-7, as encoding/json.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendJSONTime appends `t` as RFC 3339 text with nanoseconds and offset.
func appendJSONTime(dst []byte, t time.Time) ([]byte, error) {
	b, err := t.MarshalJSON()
	if err != nil {
		return nil, gerror.WrapCode(gcode.CodeInvalidParameter, err, "time has no JSON form")
	}
	return append(dst, b...), nil
}

// appendJSONString appends `s` as a JSON string, escaped as encoding/json
// escapes it (HTML-safe). A string that is not UTF-8 is refused:
// encoding/json would silently replace its bad bytes.
func appendJSONString(dst []byte, s string) ([]byte, error) {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, errNotUTF8
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

// decodeJSON decodes JSON into plain maps, slices, strings, bools and
// numbers, with integral numbers as int64 (uint64 above its range) instead of
// float64, so ids and counters keep their precision. It never builds any
// other type.
func decodeJSON(s string) (any, error) { return decodeJSONAt(s, 0) }

// decodeJSONAt is decodeJSON for JSON found at nesting `depth`.
func decodeJSONAt(s string, depth int) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errCorrupt("bad JSON: " + err.Error())
	}
	if dec.More() {
		return nil, errCorrupt("trailing JSON")
	}
	return fixNumbers(v, depth)
}

func fixNumbers(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errCorrupt("nested too deep")
	}
	var err error
	switch x := v.(type) {
	case json.Number:
		if i, e := x.Int64(); e == nil {
			return i, nil
		}
		if u, e := parseUint(string(x)); e {
			return u, nil
		}
		f, e := x.Float64()
		if e != nil {
			return nil, errCorrupt("bad JSON number")
		}
		return f, nil
	case map[string]any:
		for k, item := range x {
			if x[k], err = fixNumbers(item, depth+1); err != nil {
				return nil, err
			}
		}
	case []any:
		for i, item := range x {
			if x[i], err = fixNumbers(item, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var u uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (math.MaxUint64-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	return u, true
}
