package gfsession

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gogf/gf/v2/crypto/gaes"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/os/gtime"
)

const fuzzSessionId = "fuzzSessionId_01"

// fuzzKey is the fixed key of the sealed envelopes of FuzzDecodeSession.
var fuzzKey = bytes.Repeat([]byte{0x42}, CryptoKeySize)

func fuzzEnvelope(t testing.TB, codec string, sealed bool) *envelope {
	var keys [][]byte
	if sealed {
		keys = [][]byte{fuzzKey}
	}
	e, err := newEnvelope(codec, keys)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fuzzSeedSessions are the sessions whose encodings seed the corpus.
func fuzzSeedSessions() []map[string]any {
	ist := time.FixedZone("IST", 5*3600+1800)
	return []map[string]any{
		{},
		{"user": "ann"},
		{
			"string": "héllo", "true": true, "false": false, "nil": nil,
			"int": -1, "int8": int8(-8), "int16": int16(16), "int32": int32(-32), "int64": int64(math.MaxInt64),
			"uint": uint(1), "uint8": uint8(8), "uint16": uint16(16), "uint32": uint32(32), "uint64": uint64(math.MaxUint64),
			"float32": float32(1.5), "float64": 0.1, "bytes": []byte{0, 0xff},
			"time": time.Date(2026, 1, 2, 3, 4, 5, 6, ist), "utc": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			"gtime":   gtime.NewFromTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
			"strings": []string{"a", "b"},
			"list":    []any{int64(1), "two", []any{map[string]any{"deep": true}}},
			"map":     map[string]any{"a": map[string]any{"b": 1.25}},
			"struct":  struct{ Name string }{"bob"},
		},
	}
}

// gfLegacyFile returns a session file as gf's StorageFile writes it: 8 bytes
// of little-endian milliseconds, then JSON, optionally AES-CBC encrypted with
// gf's default key.
func gfLegacyFile(t testing.TB, json string, encrypt bool) []byte {
	body := []byte(json)
	if encrypt {
		var err error
		if body, err = gaes.Encrypt(body, gsession.DefaultStorageFileCryptoKey); err != nil {
			t.Fatal(err)
		}
	}
	return append(binary.LittleEndian.AppendUint64(nil, uint64(time.Now().UnixMilli())), body...)
}

// FuzzDecodeSession checks that decodeSession never panics on any stored
// bytes, and that whatever it accepts survives a lossless round trip:
// re-encoded with the binary codec (same sealing) it decodes to an equal map
// and the same creation time.
func FuzzDecodeSession(f *testing.F) {
	created := time.UnixMilli(1_700_000_000_123)
	for _, codec := range []string{CodecBinary, CodecJSON} {
		for _, sealed := range []bool{false, true} {
			e := fuzzEnvelope(f, codec, sealed)
			for _, data := range fuzzSeedSessions() {
				b, err := e.encodeSession(fuzzSessionId, created, data)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(b)
			}
		}
	}
	for _, json := range []string{`{}`, `{"user":"ann","n":12345678901234567890,"f":1.5,"l":[1,{"a":null}]}`} {
		f.Add([]byte(json))                                           // gf's StorageRedis
		f.Add(gfLegacyFile(f, json, false))                           // gf's StorageFile
		f.Add(gfLegacyFile(f, json, true))                            // gf's StorageFile, "encrypted"
		f.Add(append([]byte{0xF5, 'G', 'S', 1, 1, 0, 0, 0}, json...)) // legacy file that looks like a header
	}
	for _, garbage := range [][]byte{
		nil, {0}, []byte("not a session"), {0xF5, 'G', 'S'},
		{0xF5, 'G', 'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xF5, 'G', 'S', 1, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xF5, 'G', 'S', 1, 1, 0, 0, 1, 0x90, 0, 0, 0, 0, 19, 200},
		[]byte(`[1,2,3]`), []byte(`{"a":`),
	} {
		f.Add(garbage)
	}

	var (
		plain  = fuzzEnvelope(f, CodecBinary, false)
		sealed = fuzzEnvelope(f, CodecBinary, true)
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range []*envelope{plain, sealed} {
			data, created, err := e.decodeSession(fuzzSessionId, string(b))
			if err != nil {
				continue
			}
			if data == nil {
				t.Fatalf("sealed=%v: accepted with a nil map", e.keys != nil)
			}
			if why := notPlain(data); why != "" {
				t.Fatalf("sealed=%v: decoding built %s", e.keys != nil, why)
			}
			again, err := e.encodeSession(fuzzSessionId, created, data)
			if err != nil {
				t.Fatalf("sealed=%v: accepted %#v but cannot re-encode it: %v", e.keys != nil, data, err)
			}
			data2, created2, err := e.decodeSession(fuzzSessionId, string(again))
			if err != nil {
				t.Fatalf("sealed=%v: re-encoded session does not decode: %v", e.keys != nil, err)
			}
			if created2.UnixMilli() != created.UnixMilli() {
				t.Fatalf("sealed=%v: created %v, after round trip %v", e.keys != nil, created, created2)
			}
			if why := diffValue(data, data2); why != "" {
				t.Fatalf("sealed=%v: round trip changed the session: %s\nfirst:  %#v\nsecond: %#v", e.keys != nil, why, data, data2)
			}
		}
	})
}

// diffValue returns "" when `a` and `b` are the same session value (type and
// content; floats by their bits, times by instant, zone name and offset),
// else where they differ.
func diffValue(a, b any) string {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return fmt.Sprintf("type %T != %T", a, b)
	}
	switch x := a.(type) {
	case float64:
		if math.Float64bits(x) != math.Float64bits(b.(float64)) {
			return fmt.Sprintf("%v != %v", x, b)
		}
		return ""
	case float32:
		if math.Float32bits(x) != math.Float32bits(b.(float32)) {
			return fmt.Sprintf("%v != %v", x, b)
		}
		return ""
	case time.Time:
		return diffTime(x, b.(time.Time))
	case *gtime.Time:
		return diffTime(x.Time, b.(*gtime.Time).Time)
	case map[string]any:
		y := b.(map[string]any)
		if len(x) != len(y) {
			return fmt.Sprintf("map of %d keys != %d keys", len(x), len(y))
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return fmt.Sprintf("key %q lost", k)
			}
			if why := diffValue(v, w); why != "" {
				return fmt.Sprintf("[%q]: %s", k, why)
			}
		}
		return ""
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return fmt.Sprintf("list of %d != %d", len(x), len(y))
		}
		for i := range x {
			if why := diffValue(x[i], y[i]); why != "" {
				return fmt.Sprintf("[%d]: %s", i, why)
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%#v != %#v", a, b)
	}
	return ""
}

func diffTime(x, y time.Time) string {
	xn, xo := x.Zone()
	yn, yo := y.Zone()
	if !x.Equal(y) || xn != yn || xo != yo {
		return fmt.Sprintf("time %v (%q %d) != %v (%q %d)", x, xn, xo, y, yn, yo)
	}
	return ""
}

// fuzzValue is a value built from fuzz input, with what each codec must
// give back for it (see CodecBinary and CodecJSON), or that it must refuse.
type fuzzValue struct {
	v any
	// bin is what the binary codec gives back, js what the json codec
	// gives back, and inJSON what a value stored as encoding/json's JSON
	// (a struct field) gives back.
	bin, js, inJSON          any
	binBad, jsBad, inJSONBad bool // refused by the write
	height                   int  // levels of values, itself included
}

// fuzzValues builds values from fuzz input.
type fuzzValues struct {
	b      []byte
	i      int
	budget int // values still to build
}

func (g *fuzzValues) byte() byte {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return g.b[g.i-1]
}

func (g *fuzzValues) bytes(n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n && g.i < len(g.b) {
		out = append(out, g.byte())
	}
	return out
}

func (g *fuzzValues) uint64() uint64 {
	var u uint64
	for _, c := range g.bytes(8) {
		u = u<<8 | uint64(c)
	}
	return u
}

// leaf returns a value stored the same way everywhere.
func leaf(v, bin, js any) fuzzValue {
	return fuzzValue{v: v, bin: bin, js: js, inJSON: js, height: 1}
}

// intJSON is what JSON gives back for the integer `u` (negative when `neg`).
func intJSON(u uint64, neg bool) any {
	if neg {
		return -int64(u)
	}
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return u
}

// jsonNumber is what the json codec gives back for JSON number `s`, and
// whether it must refuse it because the number would not come back.
func jsonNumber(s string) (any, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, false
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, true
	}
	exact, _ := new(big.Rat).SetString(s)
	shortest, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	return f, exact == nil || exact.Cmp(shortest) != 0
}

func (g *fuzzValues) value() fuzzValue {
	if g.budget--; g.budget < 0 {
		return leaf(nil, nil, nil)
	}
	switch g.byte() % 16 {
	case 0:
		return leaf(nil, nil, nil)
	case 1:
		b := g.byte()&1 == 1
		return leaf(b, b, b)
	case 2:
		x := int64(g.uint64())
		return leaf(x, x, x)
	case 3:
		x := int(int8(g.byte()))
		return leaf(x, x, int64(x))
	case 4:
		x := g.uint64()
		return leaf(x, x, intJSON(x, false))
	case 5:
		x := math.Float64frombits(g.uint64())
		v := leaf(x, x, x)
		v.jsBad = math.IsNaN(x) || math.IsInf(x, 0)
		v.inJSONBad = v.jsBad
		return v
	case 6:
		s := string(g.bytes(int(g.byte() % 16)))
		v := leaf(s, s, s)
		v.jsBad = !utf8.ValidString(s)
		v.inJSONBad = v.jsBad
		return v
	case 7:
		b := g.bytes(int(g.byte() % 16))
		return leaf(b, b, base64.StdEncoding.EncodeToString(b))
	case 8:
		offset := (int(g.byte()) - 128) * 15 * 60
		t := time.Unix(int64(int32(g.uint64())), int64(g.uint64()%1e9)).In(time.FixedZone("F", offset))
		v := leaf(t, t, t.Format(time.RFC3339Nano))
		// The decoder takes offsets up to a day, RFC 3339 less than a day.
		v.binBad = offset < -24*3600 || offset > 24*3600
		v.jsBad = offset <= -24*3600 || offset >= 24*3600
		v.inJSONBad = v.jsBad
		return v
	case 9, 10, 11:
		return g.wrap(g.i-1, g.value())
	case 12: // nesting in a few bytes
		n, kind := int(g.byte()%80), g.byte()
		v := g.value()
		for i := 0; i < n; i++ {
			v = g.wrapAs(kind, v)
		}
		return v
	case 13:
		v := g.value()
		if _, ok := v.v.(*any); ok {
			return v // chains of pointers have a limit of their own
		}
		p := new(any)
		*p = v.v
		v.v = p
		return v
	case 14:
		x := new(big.Int).SetBytes(g.bytes(int(g.byte() % 12)))
		if g.byte()&1 == 1 {
			x.Neg(x)
		}
		v := leaf(x, x.String(), x.String())
		if x.IsInt64() {
			v.inJSON = x.Int64()
		} else if x.IsUint64() {
			v.inJSON = x.Uint64()
		} else {
			v.inJSON, v.inJSONBad = nil, true
		}
		return v
	default:
		digits := []byte(strconv.FormatUint(g.uint64(), 10) + strconv.FormatUint(g.uint64()%1e9, 10))
		digits = digits[:1+int(g.byte())%len(digits)]
		if p := int(g.byte()) % (len(digits) + 4); p > 0 && p < len(digits) {
			digits = append(digits[:p], append([]byte{'.'}, digits[p:]...)...)
		}
		s := string(digits)
		n, bad := jsonNumber(s)
		v := leaf(json.Number(s), s, n)
		v.jsBad, v.inJSONBad = bad, bad
		return v
	}
}

// wrap puts children in a map, a list or a struct, chosen by the byte at
// `at`.
func (g *fuzzValues) wrap(at int, first fuzzValue) fuzzValue {
	kind := g.b[at]
	n := int(g.byte() % 4)
	kids := []fuzzValue{first}
	for i := 1; i < n; i++ {
		kids = append(kids, g.value())
	}
	if n == 0 {
		kids = nil
	}
	return g.container(kind, kids)
}

func (g *fuzzValues) wrapAs(kind byte, v fuzzValue) fuzzValue {
	return g.container(kind%3+9, []fuzzValue{v})
}

func (g *fuzzValues) container(kind byte, kids []fuzzValue) fuzzValue {
	out := fuzzValue{height: 1}
	for _, k := range kids {
		out.height = max(out.height, k.height+1)
		out.binBad = out.binBad || k.binBad
		out.jsBad = out.jsBad || k.jsBad
		out.inJSONBad = out.inJSONBad || k.inJSONBad
	}
	switch kind % 16 {
	case 9:
		m, bin, js, in := map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}
		for i, k := range kids {
			key := "k" + strconv.Itoa(i)
			m[key], bin[key], js[key], in[key] = k.v, k.bin, k.js, k.inJSON
		}
		out.v, out.bin, out.js, out.inJSON = m, bin, js, in
	case 10:
		l, bin, js, in := []any{}, []any{}, []any{}, []any{}
		for _, k := range kids {
			l, bin, js, in = append(l, k.v), append(bin, k.bin), append(js, k.js), append(in, k.inJSON)
		}
		out.v, out.bin, out.js, out.inJSON = l, bin, js, in
	default:
		// A struct is stored as its JSON by both codecs.
		var a fuzzValue
		if len(kids) > 0 {
			a = kids[0]
		} else {
			a = leaf(nil, nil, nil)
		}
		out.v = nestStruct{A: a.v}
		out.bin = map[string]any{"a": a.inJSON}
		out.js, out.inJSON = out.bin, out.bin
		out.height = a.height + 1
		out.binBad, out.jsBad, out.inJSONBad = a.inJSONBad, a.inJSONBad, a.inJSONBad
	}
	return out
}

// FuzzCodecRoundTrip builds session values from the fuzz input (kinds,
// sizes, nesting depth) and checks, for both codecs, whole sessions and
// single values, that a write either fails naming the session key or
// stores what loads back as the codec documents it: never a value that does
// not load, and never one that comes back changed.
func FuzzCodecRoundTrip(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{9, 3, 2, 1, 2, 3, 4, 5, 6, 7, 8, 6, 3, 'a', 'b', 'c', 5, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1},
		{12, 63, 0, 1, 1}, {12, 64, 1, 1, 1}, {12, 62, 2, 12, 3, 0, 2, 1},
		{11, 1, 14, 11, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{15, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 25, 3},
		{10, 2, 6, 2, 0xff, 'a', 13, 7, 3, 1, 2, 3},
		{11, 0, 6, 1, 0xc3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &fuzzValues{b: b, budget: 200}
		v := g.value()
		if v.height > maxDepth {
			v.binBad, v.jsBad = true, true
		}
		for _, codec := range []string{CodecBinary, CodecJSON} {
			e := fuzzEnvelope(t, codec, false)
			want, bad := v.bin, v.binBad
			if codec == CodecJSON {
				want, bad = v.js, v.jsBad
			}
			blob, err := e.encodeSession(fuzzSessionId, time.Now(), map[string]any{"key": v.v})
			value, verr := e.encodeValue(fuzzSessionId, "key", v.v)
			if bad {
				if err == nil || verr == nil || !strings.Contains(err.Error(), `session key "key"`) || !strings.Contains(verr.Error(), `session key "key"`) {
					t.Fatalf("%s: %#v: want the write refused naming the key, got %v and %v", codec, v.v, err, verr)
				}
				continue
			}
			if err != nil || verr != nil {
				t.Fatalf("%s: %#v: refused: %v, %v", codec, v.v, err, verr)
			}
			data, _, err := e.decodeSession(fuzzSessionId, string(blob))
			if err != nil {
				t.Fatalf("%s: %#v: stored, but the session does not load: %v", codec, v.v, err)
			}
			got, err := e.decodeValue(fuzzSessionId, "key", string(value))
			if err != nil {
				t.Fatalf("%s: %#v: stored, but the value does not load: %v", codec, v.v, err)
			}
			for _, got := range []any{data["key"], got} {
				if why := diffStored(want, got); why != "" {
					t.Fatalf("%s: %#v came back changed: %s\nwant: %#v\ngot:  %#v", codec, v.v, why, want, got)
				}
			}
		}
	})
}

// diffStored is diffValue for a value the codecs were given back, where a
// float64 may come back from JSON as an int64 or uint64 of equal value.
func diffStored(want, got any) string {
	if f, ok := want.(float64); ok {
		switch g := got.(type) {
		case int64:
			if float64(g) == f {
				return ""
			}
		case uint64:
			if float64(g) == f {
				return ""
			}
		}
	}
	switch x := want.(type) {
	case map[string]any:
		y, ok := got.(map[string]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%#v != %#v", want, got)
		}
		for k := range x {
			if why := diffStored(x[k], y[k]); why != "" {
				return fmt.Sprintf("[%q]: %s", k, why)
			}
		}
		return ""
	case []any:
		y, ok := got.([]any)
		if !ok || len(x) != len(y) {
			return fmt.Sprintf("%#v != %#v", want, got)
		}
		for i := range x {
			if why := diffStored(x[i], y[i]); why != "" {
				return fmt.Sprintf("[%d]: %s", i, why)
			}
		}
		return ""
	}
	return diffValue(want, got)
}

// notPlain returns "" when `v` is built only of the types the decoders
// build (stored data never chooses a type), else the first other type.
func notPlain(v any) string {
	switch x := v.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, string, []byte, []string, time.Time, *gtime.Time:
		return ""
	case map[string]any:
		for _, item := range x {
			if why := notPlain(item); why != "" {
				return why
			}
		}
		return ""
	case []any:
		for _, item := range x {
			if why := notPlain(item); why != "" {
				return why
			}
		}
		return ""
	}
	return fmt.Sprintf("a %T", v)
}
