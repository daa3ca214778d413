package gfsession

import (
	"encoding/json"
	"math"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refused marks a value a codec must refuse at write time.
type refused struct{}

// sameText is a map key type whose text form is the same for every key.
type sameText int

func (sameText) MarshalText() ([]byte, error) { return []byte("same"), nil }

// hidden has state but no exported field: its JSON would be {}.
type hidden struct{ secret string }

type withBig struct {
	N big.Int `json:"n"`
}

type withString struct {
	S string `json:"s"`
}

type cyclic struct {
	Next *cyclic `json:"next"`
}

type namedString string

// nested returns `leaf` inside `n` levels made by `wrap`.
func nested(n int, leaf any, wrap func(any) any) any {
	v := leaf
	for i := 0; i < n; i++ {
		v = wrap(v)
	}
	return v
}

type nestStruct struct {
	A any `json:"a"`
}

// assertStored checks that `codec` stores `in` under a session key and
// gives back `want`, or, for refused{}, that the write fails with
// CodeInvalidParameter and an error naming the key: never a session that
// does not load again.
func assertStored(t *testing.T, codec string, in, want any) {
	t.Helper()
	e, err := newEnvelope(codec, nil)
	require.NoError(t, err)
	blob, err := e.encodeSession("sid", time.Now(), map[string]any{"the-key": in})
	value, verr := e.encodeValue("sid", "the-key", in)
	if _, ok := want.(refused); ok {
		require.Error(t, err, "%s: %#v is stored", codec, in)
		assert.Equal(t, gcode.CodeInvalidParameter, gerror.Code(err))
		assert.Contains(t, err.Error(), `session key "the-key"`)
		require.Error(t, verr, "%s: %#v is stored as a value", codec, in)
		assert.Contains(t, verr.Error(), `session key "the-key"`)
		return
	}
	require.NoError(t, err, "%s: %#v", codec, in)
	require.NoError(t, verr, "%s: %#v", codec, in)
	got, _, err := e.decodeSession("sid", string(blob))
	require.NoError(t, err, "%s: %#v is stored but does not load", codec, in)
	gotValue, err := e.decodeValue("sid", "the-key", string(value))
	require.NoError(t, err, "%s: %#v is stored as a value but does not load", codec, in)
	for _, g := range []any{got["the-key"], gotValue} {
		if f, ok := want.(float64); ok && math.IsNaN(f) {
			assert.True(t, math.IsNaN(g.(float64)))
			continue
		}
		assert.Equal(t, want, g, "%s: %#v", codec, in)
	}
}

// TestCodecs_OddTypes stores values of unusual types with both codecs:
// each comes back in its documented form (CodecBinary, CodecJSON) or is
// refused at write time, never changed silently.
func TestCodecs_OddTypes(t *testing.T) {
	big2p100, _ := new(big.Int).SetString("1267650600228229401496703205377", 10) // 2^100+1
	addr := netip.MustParseAddr("192.0.2.1")
	selfMap := map[string]any{}
	selfMap["me"] = selfMap
	selfList := []any{nil}
	selfList[0] = selfList
	selfPtr := new(any)
	*selfPtr = selfPtr
	loop := &cyclic{}
	loop.Next = loop
	tests := []struct {
		name       string
		in         any
		bin, jsonV any
	}{
		{"big.Int pointer", big2p100, "1267650600228229401496703205377", "1267650600228229401496703205377"},
		{"big.Int value", *big2p100, "1267650600228229401496703205377", "1267650600228229401496703205377"},
		{"big.Int nil", (*big.Int)(nil), nil, nil},
		{"big.Float pointer", big.NewFloat(1.5), "1.5", "1.5"},
		{"big.Float value", *big.NewFloat(-2.25), "-2.25", "-2.25"},
		{"big.Rat pointer", big.NewRat(1, 3), "1/3", "1/3"},
		{"big.Rat value", *big.NewRat(-7, 2), "-7/2", "-7/2"},
		{"big.Int in a struct", withBig{N: *big.NewInt(42)}, map[string]any{"n": int64(42)}, map[string]any{"n": int64(42)}},
		{"big.Int beyond float64 in a struct", withBig{N: *big2p100}, refused{}, refused{}},
		{"json.Number integer", json.Number("42"), "42", int64(42)},
		{"json.Number fraction", json.Number("1.5"), "1.5", 1.5},
		{"json.Number beyond float64", json.Number("12345678901234567890123"), "12345678901234567890123", refused{}},
		{"json.Number too precise", json.Number("3.14159265358979323846"), "3.14159265358979323846", refused{}},
		{"json.Number not a number", json.Number("+1"), "+1", refused{}},
		{"netip.Addr", addr, "192.0.2.1", "192.0.2.1"},
		{"netip.Addr pointer", &addr, "192.0.2.1", "192.0.2.1"},
		{"time.Duration", 5 * time.Second, int64(5e9), int64(5e9)},
		{"named string", namedString("x"), "x", "x"},
		{"uintptr", uintptr(7), uint64(7), int64(7)},
		{"uint64 max", uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{"float64 integral", 2.0, 2.0, int64(2)},
		{"NaN", math.NaN(), math.NaN(), refused{}},
		{"complex", complex(1, 2), refused{}, refused{}},
		{"channel", make(chan int), refused{}, refused{}},
		{"func", func() {}, refused{}, refused{}},
		{"channel in a map", map[string]any{"ch": make(chan int)}, refused{}, refused{}},
		{"nil pointer", (*point)(nil), nil, nil},
		{"pointer to pointer", func() any { p := &point{X: 1}; return &p }(), map[string]any{"x": int64(1), "y": ""}, map[string]any{"x": int64(1), "y": ""}},
		{"cyclic map", selfMap, refused{}, refused{}},
		{"cyclic list", selfList, refused{}, refused{}},
		{"cyclic pointer", selfPtr, refused{}, refused{}},
		{"cyclic struct", loop, refused{}, refused{}},
		{"int keys", map[int]string{-1: "a", 2: "b"}, map[string]any{"-1": "a", "2": "b"}, map[string]any{"-1": "a", "2": "b"}},
		{"text keys", map[netip.Addr]int{addr: 1}, map[string]any{"192.0.2.1": 1}, map[string]any{"192.0.2.1": int64(1)}},
		{"colliding text keys", map[sameText]int{1: 1, 2: 2}, refused{}, refused{}},
		{"float keys", map[float64]int{1.5: 1}, refused{}, refused{}},
		{"array", [3]int{1, 2, 3}, []any{1, 2, 3}, []any{int64(1), int64(2), int64(3)}},
		{"byte array", [2]byte{1, 2}, []any{uint8(1), uint8(2)}, []any{int64(1), int64(2)}},
		{"typed slice", []int8{-1}, []any{int8(-1)}, []any{int64(-1)}},
		{"string not UTF-8", "a\xffb", "a\xffb", refused{}},
		{"string not UTF-8 in a struct", withString{S: "a\xffb"}, refused{}, refused{}},
		{"struct without exported field", hidden{secret: "s"}, refused{}, refused{}},
		{"empty struct", struct{}{}, map[string]any{}, map[string]any{}},
		{"time", time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
			time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)), "2026-01-02T03:04:05.000000006+01:00"},
		{"time zone offset beyond a day", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 25*3600)), refused{}, refused{}},
		{"time beyond JSON", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), refused{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertStored(t, CodecBinary, tt.in, tt.bin)
			assertStored(t, CodecJSON, tt.in, tt.jsonV)
		})
	}
}

// TestCodecs_DepthLimit stores values nested exactly MaxValueDepth levels,
// which load again, and one level more, which the write refuses, for every
// way of nesting, with both codecs.
func TestCodecs_DepthLimit(t *testing.T) {
	wraps := map[string]func(any) any{
		"list":           func(v any) any { return []any{v} },
		"map":            func(v any) any { return map[string]any{"k": v} },
		"typed map":      func(v any) any { return map[string][]any{"k": {v}} }, // two levels
		"struct":         func(v any) any { return nestStruct{A: v} },
		"struct pointer": func(v any) any { return &nestStruct{A: v} },
		"array":          func(v any) any { return [1]any{v} },
	}
	for name, wrap := range wraps {
		levels := 1
		if name == "typed map" {
			levels = 2
		}
		for _, codec := range []string{CodecBinary, CodecJSON} {
			t.Run(name+"/"+codec, func(t *testing.T) {
				// A pointer between levels adds none.
				leaf := any(new(int64))
				within := nested(MaxValueDepth/levels, leaf, wrap)
				e, err := newEnvelope(codec, nil)
				require.NoError(t, err)
				blob, err := e.encodeSession("sid", time.Now(), map[string]any{"k": within})
				require.NoError(t, err)
				_, _, err = e.decodeSession("sid", string(blob))
				require.NoError(t, err)
				value, err := e.encodeValue("sid", "k", within)
				require.NoError(t, err)
				_, err = e.decodeValue("sid", "k", string(value))
				require.NoError(t, err)

				beyond := nested(MaxValueDepth/levels+1, leaf, wrap)
				_, err = e.encodeSession("sid", time.Now(), map[string]any{"ok": 1, "deep": beyond})
				require.Error(t, err)
				assert.Equal(t, gcode.CodeInvalidParameter, gerror.Code(err))
				assert.Contains(t, err.Error(), `session key "deep"`)
				assert.Contains(t, err.Error(), "nested deeper than 63 levels")
				_, err = e.encodeValue("sid", "deep", beyond)
				assert.ErrorContains(t, err, `session key "deep"`)
			})
		}
	}
	// JSON that a value's MarshalJSON writes counts from where it is stored.
	deepJSON := json.RawMessage(strings.Repeat("[", MaxValueDepth) + "1" + strings.Repeat("]", MaxValueDepth))
	for _, codec := range []string{CodecBinary, CodecJSON} {
		assertStored(t, codec, deepJSON, nested(MaxValueDepth-1, []any{int64(1)}, func(v any) any { return []any{v} }))
		assertStored(t, codec, []any{deepJSON}, refused{})
	}
}
