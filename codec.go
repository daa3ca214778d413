package gfsession

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gtime"
)

// Codec names accepted by the `codec` option.
const (
	// CodecBinary is the default: a compact tagged encoding that gives back
	// every value with its Go type: all int and uint widths at full precision,
	// float32/float64, []byte as bytes, time.Time with its instant and offset,
	// *gtime.Time, nested maps and slices. Structs come back as
	// map[string]any (readable with gvar.Struct or Scan).
	CodecBinary = "binary"
	// CodecJSON stores plain JSON, for sites where other programs read the
	// sessions. Numbers come back as int64 when integral, else float64;
	// []byte as base64 text; time.Time as RFC 3339 text.
	CodecJSON = "json"

	// DefaultCodec is the codec used when none is configured.
	DefaultCodec = CodecBinary
)

const (
	codecIdBinary = 1
	codecIdJSON   = 2

	maxDepth = 64 // nesting limit for encoding and decoding
)

// errCorrupt is the error for stored data that cannot be decoded.
func errCorrupt(reason string) error {
	return gerror.NewCodef(gcode.CodeInvalidParameter, "corrupt session data: %s", reason)
}

// valueCodec encodes one value (a whole session is a map[string]any value).
type valueCodec interface {
	id() byte
	encode(dst []byte, v any) ([]byte, error)
	// decode takes the stored form as a string: backends read strings
	// (go-redis replies) or make one copy of what they read, and decoded
	// strings can then share it instead of being copied one by one.
	decode(s string) (any, error)
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

func (binaryCodec) encode(dst []byte, v any) ([]byte, error) {
	return encodeBinary(dst, v, 0)
}

func (binaryCodec) decode(s string) (any, error) {
	d := binaryDecoder{s: s, share: len(s) <= maxSharedDecode}
	v, err := d.value(0)
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

func appendTime(dst []byte, t time.Time) []byte {
	name, offset := t.Zone()
	if t.Location() == time.UTC {
		name = "UTC"
	}
	dst = binary.AppendVarint(dst, t.Unix())
	dst = binary.AppendUvarint(dst, uint64(t.Nanosecond()))
	dst = binary.AppendVarint(dst, int64(offset))
	return appendString(dst, name)
}

func encodeBinary(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "session value nested deeper than %d levels", maxDepth)
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
		return appendTime(append(dst, tagTime), x), nil
	case *time.Time:
		if x == nil {
			return append(dst, tagNil), nil
		}
		return appendTime(append(dst, tagTime), *x), nil
	case *gtime.Time:
		if x == nil {
			return append(dst, tagNil), nil
		}
		return appendTime(append(dst, tagGTime), x.Time), nil
	case gtime.Time:
		return appendTime(append(dst, tagGTime), x.Time), nil
	case *gvar.Var:
		if x == nil {
			return append(dst, tagNil), nil
		}
		return encodeBinary(dst, x.Val(), depth)
	case map[string]any:
		dst = binary.AppendUvarint(append(dst, tagMap), uint64(len(x)))
		var err error
		for k, item := range x {
			dst = appendString(dst, k)
			if dst, err = encodeBinary(dst, item, depth+1); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case []any:
		dst = binary.AppendUvarint(append(dst, tagList), uint64(len(x)))
		var err error
		for _, item := range x {
			if dst, err = encodeBinary(dst, item, depth+1); err != nil {
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
	return encodeReflect(dst, v, depth)
}

// encodeReflect handles what the fast switch does not: typed maps and slices
// are walked (so their elements keep their types), everything else
// (structs, types with MarshalJSON, arrays with MarshalText such as a UUID,
// which would otherwise come back as a list of numbers) is stored as JSON.
func encodeReflect(dst []byte, v any, depth int) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if _, ok := v.(json.Marshaler); !ok && !textArray(rv, v) {
		switch rv.Kind() {
		case reflect.Pointer:
			if rv.IsNil() {
				return append(dst, tagNil), nil
			}
			return encodeBinary(dst, rv.Elem().Interface(), depth+1)
		case reflect.Slice, reflect.Array:
			if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
				return encodeBinary(dst, rv.Bytes(), depth)
			}
			n := rv.Len()
			dst = binary.AppendUvarint(append(dst, tagList), uint64(n))
			var err error
			for i := 0; i < n; i++ {
				if dst, err = encodeBinary(dst, rv.Index(i).Interface(), depth+1); err != nil {
					return nil, err
				}
			}
			return dst, nil
		case reflect.Map:
			if rv.Type().Key().Kind() == reflect.String {
				dst = binary.AppendUvarint(append(dst, tagMap), uint64(rv.Len()))
				var err error
				iter := rv.MapRange()
				for iter.Next() {
					dst = appendString(dst, iter.Key().String())
					if dst, err = encodeBinary(dst, iter.Value().Interface(), depth+1); err != nil {
						return nil, err
					}
				}
				return dst, nil
			}
		case reflect.String:
			return appendString(append(dst, tagString), rv.String()), nil
		case reflect.Bool:
			return encodeBinary(dst, rv.Bool(), depth)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return binary.AppendVarint(append(dst, tagInt64), rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			return binary.AppendUvarint(append(dst, tagUint64), rv.Uint()), nil
		case reflect.Float32, reflect.Float64:
			return encodeBinary(dst, rv.Float(), depth)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidParameter, err, "session value of type %T cannot be stored", v)
	}
	dst = binary.AppendUvarint(append(dst, tagJSON), uint64(len(b)))
	return append(dst, b...), nil
}

// textArray reports whether `v` is an array with a text form of its own
// (encoding.TextMarshaler), which JSON stores as that text.
func textArray(rv reflect.Value, v any) bool {
	if rv.Kind() != reflect.Array {
		return false
	}
	_, ok := v.(encoding.TextMarshaler)
	return ok
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

func (jsonCodec) encode(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidParameter, err, "session value of type %T cannot be stored as JSON", v)
	}
	return append(dst, b...), nil
}

func (jsonCodec) decode(s string) (any, error) { return decodeJSON(s) }

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
