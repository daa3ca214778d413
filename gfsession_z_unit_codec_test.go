package gfsession

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gogf/gf/v2/crypto/gaes"
	"github.com/gogf/gf/v2/encoding/gbinary"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/os/gtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, CryptoKeySize)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

type point struct {
	X int    `json:"x"`
	Y string `json:"y"`
}

func TestBinaryCodec_Types(t *testing.T) {
	ist := time.FixedZone("IST", 19800)
	gt := gtime.NewFromTime(time.Date(2026, 3, 4, 5, 6, 7, 8, ist))
	in := map[string]any{
		"int": int(-1), "int8": int8(-8), "int16": int16(-16), "int32": int32(-32), "int64": int64(math.MinInt64),
		"uint": uint(math.MaxUint64), "uint8": uint8(8), "uint16": uint16(16), "uint32": uint32(32), "uint64": uint64(math.MaxUint64),
		"float32": float32(1.5), "float64": math.Pi, "nan": math.Inf(-1),
		"string": "s", "bytes": []byte{0, 255}, "emptyBytes": []byte{}, "bool": true, "nil": nil,
		"time": time.Date(2026, 3, 4, 5, 6, 7, 8, ist), "utc": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"strings": []string{"a", "b"}, "list": []any{int64(1), "x"}, "map": map[string]any{"k": []any{}},
	}
	b, err := binaryCodec{}.encode(nil, in)
	require.NoError(t, err)
	out, err := binaryCodec{}.decode(string(b))
	require.NoError(t, err)
	m := out.(map[string]any)
	for k, v := range in {
		if tv, ok := v.(time.Time); ok {
			got := m[k].(time.Time)
			assert.True(t, tv.Equal(got), k)
			wn, wo := tv.Zone()
			gn, gOff := got.Zone()
			assert.Equal(t, wo, gOff, k)
			assert.Equal(t, wn, gn, k)
			continue
		}
		assert.Equal(t, v, m[k], k)
	}

	// Types reached through reflection or JSON.
	typed := map[string]any{
		"gtime":   gt,
		"ints":    []int{1, 2},
		"strMap":  map[string]string{"a": "b"},
		"struct":  point{X: 1, Y: "y"},
		"ptr":     &point{X: 2},
		"named":   time.Duration(5),
		"nilPtr":  (*point)(nil),
		"intKeys": map[int]string{1: "one"},
	}
	b, err = binaryCodec{}.encode(nil, typed)
	require.NoError(t, err)
	out, err = binaryCodec{}.decode(string(b))
	require.NoError(t, err)
	m = out.(map[string]any)
	assert.True(t, gt.Equal(m["gtime"].(*gtime.Time)))
	assert.Equal(t, []any{1, 2}, m["ints"])
	assert.Equal(t, map[string]any{"a": "b"}, m["strMap"])
	assert.Equal(t, map[string]any{"x": int64(1), "y": "y"}, m["struct"], "structs come back as maps")
	assert.Equal(t, map[string]any{"x": int64(2), "y": ""}, m["ptr"])
	assert.Equal(t, int64(5), m["named"])
	assert.Nil(t, m["nilPtr"])
	assert.Equal(t, map[string]any{"1": "one"}, m["intKeys"])
}

func TestBinaryCodec_Limits(t *testing.T) {
	var deep any = "leaf"
	for i := 0; i < maxDepth+2; i++ {
		deep = []any{deep}
	}
	_, err := binaryCodec{}.encode(nil, deep)
	assert.Error(t, err, "nesting beyond maxDepth is refused on encode")

	_, err = binaryCodec{}.encode(nil, map[string]any{"ch": make(chan int)})
	assert.Error(t, err, "values JSON cannot encode are refused, not stored wrongly")

	// A length far beyond the data must fail without allocating it.
	huge := []byte{tagList, 0xff, 0xff, 0xff, 0xff, 0x0f}
	_, err = binaryCodec{}.decode(string(huge))
	assert.Error(t, err)
	_, err = binaryCodec{}.decode(string([]byte{tagString, 5, 'a'}))
	assert.Error(t, err)
	_, err = binaryCodec{}.decode(string([]byte{tagTrue, tagTrue}))
	assert.Error(t, err, "trailing bytes")
	_, err = binaryCodec{}.decode(string([]byte{200}))
	assert.Error(t, err, "unknown tag")
	_, err = binaryCodec{}.decode(string(bytes.Repeat([]byte{tagList, 1}, maxDepth+2)))
	assert.Error(t, err, "nesting beyond maxDepth is refused on decode")
}

// textId is an array with a text form, as a UUID type is.
type textId [4]byte

func (id textId) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%x", id[:])), nil }

// TestBinaryCodec_TextArrays checks that an array with MarshalText comes
// back as its text, as JSON stores it, not as a list of numbers.
func TestBinaryCodec_TextArrays(t *testing.T) {
	b, err := binaryCodec{}.encode(nil, map[string]any{"id": textId{1, 2, 3, 255}, "plain": [2]int{1, 2}})
	require.NoError(t, err)
	out, err := binaryCodec{}.decode(string(b))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"id": "010203ff", "plain": []any{1, 2}}, out)
}

// TestBinaryCodec_NestedHeadersDoNotAmplify decodes nested list headers that
// each claim nearly all the bytes left: refused before the decoder has
// allocated more than a small multiple of the input.
func TestBinaryCodec_NestedHeadersDoNotAmplify(t *testing.T) {
	const size = 64 << 10
	var b []byte
	for i := 0; i < maxDepth-1; i++ {
		b = append(b, tagList)
		b = binary.AppendUvarint(b, uint64(size-len(b)-3))
	}
	b = append(b, bytes.Repeat([]byte{0xff}, size-len(b))...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := binaryCodec{}.decode(string(b))
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(32*size), "decoding %d corrupt bytes allocated %d", size, allocated)
}

func TestJSONCodec_Numbers(t *testing.T) {
	v, err := jsonCodec{}.decode(`{"i":9007199254740993,"u":18446744073709551615,"f":1.5,"n":-3,"l":[1,2.5]}`)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"i": int64(9007199254740993), "u": uint64(math.MaxUint64), "f": 1.5, "n": int64(-3), "l": []any{int64(1), 2.5},
	}, v)
}

func TestEnvelope_RoundTrip(t *testing.T) {
	created := time.UnixMilli(time.Now().UnixMilli())
	data := map[string]any{"user": "ann", "n": int64(42), "raw": []byte{1, 2}}
	for _, codec := range []string{CodecBinary, CodecJSON} {
		for _, sealed := range []bool{false, true} {
			var keys [][]byte
			if sealed {
				keys = [][]byte{randomKey(t)}
			}
			e, err := newEnvelope(codec, keys)
			require.NoError(t, err)
			blob, err := e.encodeSession("id1", created, data)
			require.NoError(t, err)
			got, gotCreated, err := e.decodeSession("id1", string(blob))
			require.NoError(t, err, "%s sealed=%v", codec, sealed)
			assert.True(t, created.Equal(gotCreated))
			assert.Equal(t, "ann", got["user"])
			assert.Equal(t, int64(42), got["n"])
			if codec == CodecBinary {
				assert.Equal(t, []byte{1, 2}, got["raw"])
			}
			if sealed {
				assert.NotContains(t, string(blob), "ann", "sealed data must not show the plain text")
				_, _, err = e.decodeSession("id2", string(blob))
				assert.Error(t, err, "a sealed blob copied to another session id must not open")
				tampered := bytes.Clone(blob)
				tampered[len(tampered)-1] ^= 1
				_, _, err = e.decodeSession("id1", string(tampered))
				assert.Error(t, err, "tampered data must not open")
				tampered = bytes.Clone(blob)
				tampered[6] ^= 1 // created-at is authenticated too
				_, _, err = e.decodeSession("id1", string(tampered))
				assert.Error(t, err)
			}
		}
	}
}

func TestEnvelope_KeyRotation(t *testing.T) {
	oldKey, newKey, otherKey := randomKey(t), randomKey(t), randomKey(t)
	oldEnv, err := newEnvelope("", [][]byte{oldKey})
	require.NoError(t, err)
	blob, err := oldEnv.encodeSession("sid", time.Now(), map[string]any{"k": "v"})
	require.NoError(t, err)

	rotated, err := newEnvelope("", [][]byte{newKey, oldKey})
	require.NoError(t, err)
	got, _, err := rotated.decodeSession("sid", string(blob))
	require.NoError(t, err)
	assert.Equal(t, "v", got["k"])

	other, err := newEnvelope("", [][]byte{otherKey})
	require.NoError(t, err)
	_, _, err = other.decodeSession("sid", string(blob))
	assert.ErrorContains(t, err, "no crypto key opens")

	plain, err := newEnvelope("", nil)
	require.NoError(t, err)
	_, _, err = plain.decodeSession("sid", string(blob))
	assert.ErrorContains(t, err, "no cryptoKeys")
	plainBlob, err := plain.encodeSession("sid", time.Now(), map[string]any{"k": "v"})
	require.NoError(t, err)
	_, _, err = rotated.decodeSession("sid", string(plainBlob))
	assert.ErrorContains(t, err, "not sealed", "with keys configured, unsealed data is refused: it could be forged")
}

func TestEnvelope_Legacy(t *testing.T) {
	e, err := newEnvelope("", nil)
	require.NoError(t, err)
	j := []byte(`{"user":"ann","id":9007199254740993}`)

	// gf's StorageRedis: a JSON blob.
	got, created, err := e.decodeSession("sid", string(j))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"user": "ann", "id": int64(9007199254740993)}, got)
	assert.True(t, created.IsZero())

	// gf's StorageFile: 8 bytes little-endian milliseconds + JSON.
	file := append(gbinary.EncodeInt64(time.Now().UnixMilli()), j...)
	got, _, err = e.decodeSession("sid", string(file))
	require.NoError(t, err)
	assert.Equal(t, "ann", got["user"])

	// gf's StorageFile with its crypto enabled: AES with gf's public default key.
	sealed, err := gaes.Encrypt(j, gsession.DefaultStorageFileCryptoKey)
	require.NoError(t, err)
	got, _, err = e.decodeSession("sid", string(append(gbinary.EncodeInt64(time.Now().UnixMilli()), sealed...)))
	require.NoError(t, err)
	assert.Equal(t, "ann", got["user"])

	// With cryptoKeys, unauthenticated legacy data could be forged: refused.
	sealing, err := newEnvelope("", [][]byte{randomKey(t)})
	require.NoError(t, err)
	_, _, err = sealing.decodeSession("sid", string(j))
	assert.ErrorContains(t, err, "unsealed data refused")
	_, _, err = sealing.decodeSession("sid", string(file))
	assert.ErrorContains(t, err, "unsealed data refused")
	_, err = sealing.decodeValue("sid", "k", "42")
	assert.ErrorContains(t, err, "unsealed value refused")

	for _, bad := range [][]byte{nil, {}, []byte("x"), []byte(`{"a":`), []byte(`[1]`), []byte("12345678not json")} {
		_, _, err = e.decodeSession("sid", string(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestEnvelope_Values(t *testing.T) {
	key := randomKey(t)
	for _, keys := range [][][]byte{nil, {key}} {
		e, err := newEnvelope("", keys)
		require.NoError(t, err)
		b, err := e.encodeValue("sid", "user", int64(7))
		require.NoError(t, err)
		v, err := e.decodeValue("sid", "user", string(b))
		require.NoError(t, err)
		assert.Equal(t, int64(7), v)
		if keys != nil {
			_, err = e.decodeValue("sid", "other", string(b))
			assert.Error(t, err, "a sealed value moved to another key must not open")
		}
		v, err = e.decodeValue("sid", "legacy", "42")
		if keys != nil {
			assert.Error(t, err, "with cryptoKeys, gf's unsealed fields are refused")
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, "42", v, "gf's hash storage wrote plain strings")
	}
}

func TestParseCryptoKeys(t *testing.T) {
	key := randomKey(t)
	for _, enc := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		" " + base64.RawURLEncoding.EncodeToString(key) + "\n",
	} {
		keys, err := ParseCryptoKeys([]string{enc})
		require.NoError(t, err, enc)
		assert.Equal(t, [][]byte{key}, keys)
	}
	_, err := ParseCryptoKeys([]string{base64.StdEncoding.EncodeToString(key[:16])})
	assert.ErrorContains(t, err, "cryptoKeys[0]: key is 16 bytes, want 32")
	_, err = ParseCryptoKeys([]string{base64.StdEncoding.EncodeToString(key), "not base64!"})
	assert.ErrorContains(t, err, "cryptoKeys[1]")
	_, err = newKeyRing([][]byte{key[:31]})
	assert.Error(t, err)
}

func TestLifetimeLeft(t *testing.T) {
	now := time.Now()
	assert.Equal(t, time.Hour, lifetimeLeft(now, 0, time.Hour, now), "no cap")
	assert.Equal(t, time.Hour, lifetimeLeft(time.Time{}, time.Minute, time.Hour, now), "unknown creation time")
	assert.Equal(t, time.Minute, lifetimeLeft(now, time.Minute, time.Hour, now), "cap shorter than ttl")
	assert.Equal(t, time.Hour, lifetimeLeft(now, 2*time.Hour, time.Hour, now), "ttl shorter than cap")
	assert.LessOrEqual(t, lifetimeLeft(now.Add(-2*time.Minute), time.Minute, time.Hour, now), time.Duration(0), "over")
}

func TestSessionIds(t *testing.T) {
	valid := []string{"a", "A-b_9", strings.Repeat("x", MaxSessionIdLength), "1kx8n0v2l4c0d7tq1ptb1a9c3g4h5i6j", NewSessionId()}
	for _, id := range valid {
		assert.True(t, IsValidSessionId(id), "%q", id)
	}
	invalid := []string{"", strings.Repeat("x", MaxSessionIdLength+1), "../x", "a/b", "a.b", "x\x00", "{a}", "a*", "a b", "é", "a=", "a+b"}
	for _, id := range invalid {
		assert.False(t, IsValidSessionId(id), "%q", id)
	}
	const n = 1_000_000
	seen := make(map[string]struct{}, n)
	for i := 0; i < n; i++ { // plain checks: testify per iteration would dominate
		id := NewSessionId()
		if len(id) != 32 || !IsValidSessionId(id) {
			t.Fatalf("NewSessionId() = %q: want 32 characters of A-Z a-z 0-9 - _", id)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("NewSessionId() returned %q twice in %d ids", id, i+1)
		}
		seen[id] = struct{}{}
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		Name  string        `json:"name"`
		On    bool          `json:"on"`
		N     int           `json:"n"`
		D     time.Duration `json:"d"`
		Keys  [][]byte      `json:"cryptoKeys"`
		Addrs []string      `json:"addrs"`
	}
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name    string
		in      map[string]any
		want    cfg
		rest    map[string]any
		wantErr string
	}{
		{"all", map[string]any{"NAME": "x", "on": "yes", "n": "3", "d": "1d", "cryptoKeys": []any{key}, "addrs": []any{"a", "b"}},
			cfg{Name: "x", On: true, N: 3, D: 24 * time.Hour, Keys: [][]byte{make([]byte, 32)}, Addrs: []string{"a", "b"}}, nil, ""},
		{"extra", map[string]any{"address": "127.0.0.1:6379"}, cfg{}, map[string]any{"address": "127.0.0.1:6379"}, ""},
		{"zero duration", map[string]any{"d": 0}, cfg{}, nil, ""},
		{"unknown", map[string]any{"nmae": "x"}, cfg{}, nil, "p.nmae: unknown key; valid keys: addrs, cryptoKeys, d, n, name, on, address"},
		{"bool", map[string]any{"on": "maybe"}, cfg{}, nil, "p.on"},
		{"name not string", map[string]any{"name": 5}, cfg{}, nil, "p.name: want a string"},
		{"float for int", map[string]any{"n": 1.5}, cfg{}, nil, "p.n: want a whole number"},
		{"bare duration", map[string]any{"d": 30}, cfg{}, nil, `p.d: 30 has no unit`},
		{"keys not list", map[string]any{"cryptoKeys": 5}, cfg{}, nil, "p.cryptoKeys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c cfg
			rest, err := decodeConfig("p", tt.in, &c, "address")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c)
			assert.Equal(t, tt.rest, rest)
		})
	}
}

func TestFixNumbers_Depth(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+5) + strings.Repeat("]", maxDepth+5)
	_, err := decodeJSON(deep)
	assert.Error(t, err)
	var v any
	require.NoError(t, json.Unmarshal([]byte(`{"a":1}`), &v))
}

// The decoder reads varints itself (from a string): it must accept exactly
// what encoding/binary accepts, and read the same value.
func TestBinaryDecoder_VarintsMatchEncodingBinary(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 255, 300, 1<<14 - 1, 1 << 14, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, math.MaxUint64}
	for _, u := range values {
		d := binaryDecoder{s: string(binary.AppendUvarint(nil, u))}
		got, err := d.uvarint()
		require.NoError(t, err, u)
		assert.Equal(t, u, got)
		assert.Equal(t, len(d.s), d.i, "uvarint %d read to its end", u)

		i := int64(u)
		d = binaryDecoder{s: string(binary.AppendVarint(nil, i))}
		gotI, err := d.varint()
		require.NoError(t, err, i)
		assert.Equal(t, i, gotI)
	}
	malformed := [][]byte{
		{},
		{0x80},
		bytes.Repeat([]byte{0xff}, 10), // no end within 10 bytes
		append(bytes.Repeat([]byte{0xff}, 9), 0x02),  // 10th byte overflows 64 bits
		append(bytes.Repeat([]byte{0x80}, 10), 0x01), // 11 bytes
	}
	for _, b := range malformed {
		_, n := binary.Uvarint(b)
		require.LessOrEqual(t, n, 0, "encoding/binary accepts %x", b)
		d := binaryDecoder{s: string(b)}
		_, err := d.uvarint()
		assert.Error(t, err, "%x", b)
	}
}

// Decoded strings of a small stored value are slices of it (no allocation
// per string); those of a large one are copies, so that keeping one short
// string does not keep the whole stored value alive.
func TestBinaryCodec_StringsShareSmallInput(t *testing.T) {
	// inside reports whether `sub`'s bytes lie in `s`'s memory.
	inside := func(s, sub string) bool {
		p, start := uintptr(unsafe.Pointer(unsafe.StringData(sub))), uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return p >= start && p < start+uintptr(len(s))
	}
	for _, tc := range []struct {
		pad    int
		shared bool
	}{{0, true}, {maxSharedDecode, false}} {
		b, err := binaryCodec{}.encode(nil, map[string]any{"pad": strings.Repeat("x", tc.pad), "a": "alpha"})
		require.NoError(t, err)
		stored := string(b)
		v, err := binaryCodec{}.decode(stored)
		require.NoError(t, err)
		a := v.(map[string]any)["a"].(string)
		assert.Equal(t, "alpha", a)
		assert.Equal(t, tc.shared, inside(stored, a), "stored value of %d bytes", len(stored))
	}
}
