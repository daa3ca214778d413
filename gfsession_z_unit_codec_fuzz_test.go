package gfsession

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

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
