package gfsession

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/gogf/gf/contrib/drivers/sqlite/v2"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configTestSQLite returns the link of a new SQLite database, and a gdb.DB
// on it closed by the test's cleanup.
func configTestSQLite(t *testing.T) (string, gdb.DB) {
	t.Helper()
	link := "sqlite::@file(" + filepath.Join(t.TempDir(), "sessions.db") + ")"
	db, err := gdb.New(gdb.ConfigNode{Link: link})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return link, db
}

// cleanerOf returns the background work of a storage with a cleaner.
func cleanerOf(t *testing.T, storage gsession.Storage) *background {
	t.Helper()
	switch s := storage.(type) {
	case *StorageMemory:
		return &s.sweeper
	case *StorageFile:
		return &s.cleaner
	case *StorageDB:
		return &s.cleaner
	}
	t.Fatalf("%T has no cleaner", storage)
	return nil
}

func closeStorage(t *testing.T, storage gsession.Storage) {
	t.Helper()
	if c, ok := storage.(interface{ Close(context.Context) error }); ok {
		require.NoError(t, c.Close(context.Background()))
	}
}

// TestConfig_CleanerOff: every storage with a cleaner (memory, file, db;
// Redis expires its keys itself and has none) turns it off the same way:
// "off" in any case or a negative duration in the config map, a negative
// CleanupInterval in code. 0 or no key starts the default cleaner.
func TestConfig_CleanerOff(t *testing.T) {
	link, db := configTestSQLite(t)
	storages := []struct {
		typ    string
		config func(t *testing.T) map[string]any
		code   func(t *testing.T, interval time.Duration) (gsession.Storage, error)
	}{
		{TypeMemory, func(*testing.T) map[string]any { return map[string]any{} },
			func(_ *testing.T, interval time.Duration) (gsession.Storage, error) {
				return NewStorageMemory(MemoryConfig{CleanupInterval: interval}), nil
			}},
		{TypeFile, func(t *testing.T) map[string]any { return map[string]any{"path": t.TempDir()} },
			func(t *testing.T, interval time.Duration) (gsession.Storage, error) {
				return NewStorageFile(FileConfig{Path: t.TempDir(), CleanupInterval: interval})
			}},
		{TypeDB, func(*testing.T) map[string]any { return map[string]any{"link": link} },
			func(_ *testing.T, interval time.Duration) (gsession.Storage, error) {
				return NewStorageDB(db, DBConfig{CleanupInterval: interval})
			}},
	}
	values := []struct {
		value any // nil: no cleanupInterval key
		on    bool
	}{
		{"off", false}, {"OFF", false}, {" Off ", false}, {"-1s", false}, {-time.Second, false},
		{"1h", true}, {"0", true}, {nil, true},
	}
	for _, st := range storages {
		for _, v := range values {
			t.Run(st.typ+"/config/"+strings.TrimSpace(fmtValue(v.value)), func(t *testing.T) {
				config := st.config(t)
				config["type"] = st.typ
				if v.value != nil {
					config["cleanupInterval"] = v.value
				}
				s, err := New(context.Background(), config)
				require.NoError(t, err)
				defer closeStorage(t, s)
				assert.Equal(t, v.on, cleanerOf(t, s).done != nil, "cleaner running")
			})
		}
		for _, interval := range []time.Duration{-1, -time.Hour, 0, time.Hour} {
			t.Run(st.typ+"/code/"+interval.String(), func(t *testing.T) {
				s, err := st.code(t, interval)
				require.NoError(t, err)
				defer closeStorage(t, s)
				assert.Equal(t, interval >= 0, cleanerOf(t, s).done != nil, "cleaner running")
			})
		}
	}
	t.Run("db timeout off", func(t *testing.T) {
		s, err := New(context.Background(), map[string]any{"type": TypeDB, "link": link, "timeout": "Off"})
		require.NoError(t, err)
		defer closeStorage(t, s)
		assert.Negative(t, s.(*StorageDB).config.Timeout, "no bound")
	})
	t.Run("off is for intervals only", func(t *testing.T) {
		_, err := New(context.Background(), map[string]any{"type": TypeMemory, "maxLifetime": "off"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sessionStorage.maxLifetime: ")
	})
}

func fmtValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "no key"
	case string:
		return `"` + v + `"`
	case time.Duration:
		return "duration " + v.String()
	}
	return "?"
}

// TestConfig_SameErrors: a bad value fails the same way through the
// storage's constructor and through New with a config map: the
// constructor's error is "gfsession: <type> storage: <key>: <text>", the
// config map's "sessionStorage.<key>: <text>", with the same text, and both
// are CodeInvalidConfiguration. NewStorageMemory returns no error: its bad
// values are the config map's only (a negative number means none in code).
func TestConfig_SameErrors(t *testing.T) {
	link, db := configTestSQLite(t)
	redis, err := gredis.New(&gredis.Config{Address: "127.0.0.1:1"}) // never dialled
	require.NoError(t, err)
	t.Cleanup(func() { _ = redis.Close(context.Background()) })
	aFile := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(aFile, nil, 0o600))
	short := []any{"c2hvcnQ="} // 5 bytes

	type bad struct {
		key    string
		value  any               // in the config map
		config func(c any)       // the same value in the config struct (a pointer); nil: code accepts it
		more   map[string]string // more config map keys
	}
	type storage struct {
		typ   string
		base  map[string]any         // the config map's other keys
		build func(config any) error // the constructor; nil: it returns no error
		new   func() any             // a new config struct
		bad   []bad
	}
	storages := []storage{
		{TypeMemory, map[string]any{}, nil, func() any { return &MemoryConfig{} }, []bad{
			{key: "maxSessions", value: -1},
			{key: "maxLifetime", value: "-1h"},
			{key: "cleanupInterval", value: "never"},
			{key: "maxSessionsPerUser", value: 2}, // without userKey
			{key: "maxSessionsPerUser", value: -1, more: map[string]string{"userKey": "uid"}},
		}},
		{TypeFile, map[string]any{"path": t.TempDir()},
			func(c any) error { _, err := NewStorageFile(*c.(*FileConfig)); return err },
			func() any { return &FileConfig{} }, []bad{
				{"path", aFile, func(c any) { c.(*FileConfig).Path = aFile }, nil},
				{"maxLifetime", "-1h", func(c any) { c.(*FileConfig).MaxLifetime = -time.Hour }, nil},
				{"maxFileSize", -1, func(c any) { c.(*FileConfig).MaxFileSize = -1 }, nil},
				{"codec", "xml", func(c any) { c.(*FileConfig).Codec = "xml" }, nil},
				{"cryptoKeys", short, func(c any) { c.(*FileConfig).CryptoKeys = [][]byte{[]byte("short")} }, nil},
				{"maxSessionsPerUser", 2, func(c any) { c.(*FileConfig).MaxSessionsPerUser = 2 }, nil},
				{"maxSessionsPerUser", -1, func(c any) { c.(*FileConfig).MaxSessionsPerUser, c.(*FileConfig).UserKey = -1, "uid" },
					map[string]string{"userKey": "uid"}},
			}},
		{TypeDB, map[string]any{"link": link},
			func(c any) error { _, err := NewStorageDB(db, *c.(*DBConfig)); return err },
			func() any { return &DBConfig{} }, []bad{
				{"table", "x; DROP TABLE y", func(c any) { c.(*DBConfig).Table = "x; DROP TABLE y" }, nil},
				{"maxConns", -1, func(c any) { c.(*DBConfig).MaxConns = -1 }, nil},
				// From code a negative batch is the default, as it always was.
				{"cleanupBatch", -1, nil, nil},
				{"maxLifetime", "-1h", func(c any) { c.(*DBConfig).MaxLifetime = -time.Hour }, nil},
				{"touchInterval", "-1m", func(c any) { c.(*DBConfig).TouchInterval = -time.Minute }, nil},
				{"codec", "xml", func(c any) { c.(*DBConfig).Codec = "xml" }, nil},
				{"cryptoKeys", short, func(c any) { c.(*DBConfig).CryptoKeys = [][]byte{[]byte("short")} }, nil},
				{"maxSessionsPerUser", 2, func(c any) { c.(*DBConfig).MaxSessionsPerUser = 2 }, nil},
			}},
	}
	for _, typ := range []string{TypeRedis, TypeRedisHash} {
		build := func(c any) error { _, err := NewStorageRedis(redis, *c.(*RedisConfig)); return err }
		if typ == TypeRedisHash {
			build = func(c any) error { _, err := NewStorageRedisHash(redis, *c.(*RedisConfig)); return err }
		}
		storages = append(storages, storage{typ, map[string]any{"address": "127.0.0.1:1"}, build, func() any { return &RedisConfig{} }, []bad{
			{"noPrefix", true, func(c any) { c.(*RedisConfig).NoPrefix, c.(*RedisConfig).Prefix = true, "p:" }, map[string]string{"prefix": "p:"}},
			// From code a negative lifetime is none, as it always was.
			{"maxLifetime", "-1h", nil, nil},
			{"userIndexTTL", "-1h", func(c any) { c.(*RedisConfig).UserIndexTTL = -time.Hour }, nil},
			{"codec", "xml", func(c any) { c.(*RedisConfig).Codec = "xml" }, nil},
			{"cryptoKeys", short, func(c any) { c.(*RedisConfig).CryptoKeys = [][]byte{[]byte("short")} }, nil},
			{"maxSessionsPerUser", 2, func(c any) { c.(*RedisConfig).MaxSessionsPerUser = 2 }, nil},
			{"maxSessionsPerUser", -1, func(c any) { c.(*RedisConfig).MaxSessionsPerUser, c.(*RedisConfig).UserKey = -1, "uid" },
				map[string]string{"userKey": "uid"}},
		}})
	}
	for _, st := range storages {
		for _, b := range st.bad {
			t.Run(st.typ+"/"+b.key, func(t *testing.T) {
				m := map[string]any{"type": st.typ}
				for k, v := range st.base {
					m[k] = v
				}
				for k, v := range b.more {
					m[k] = v
				}
				m[b.key] = b.value
				s, err := New(context.Background(), m)
				require.Error(t, err)
				require.Nil(t, s)
				assert.Equal(t, gcode.CodeInvalidConfiguration, gerror.Code(err))
				mapText, ok := strings.CutPrefix(err.Error(), configPath+"."+b.key)
				require.True(t, ok, "the config map's error names the key: %v", err)
				if st.build == nil || b.config == nil {
					return
				}
				config := st.new()
				b.config(config)
				err = st.build(config)
				require.Error(t, err)
				assert.Equal(t, gcode.CodeInvalidConfiguration, gerror.Code(err))
				codeText, ok := strings.CutPrefix(err.Error(), "gfsession: "+st.typ+" storage: "+b.key)
				require.True(t, ok, "the constructor's error names the type and key: %v", err)
				assert.Equal(t, codeText, mapText, "the same text after the key")
			})
		}
	}
}

// TestConfig_DecodeOffAndPointers: decodeConfig reads "off" as -1 for a
// duration tagged `config:"negative"` only, and sets a pointer field (the
// db storage's createTable) to a new value.
func TestConfig_DecodeOffAndPointers(t *testing.T) {
	type cfg struct {
		Interval time.Duration `json:"interval" config:"negative"`
		Lifetime time.Duration `json:"lifetime"`
		On       *bool         `json:"on"`
	}
	var c cfg
	_, err := decodeConfig("p", map[string]any{"interval": "oFF", "on": "no"}, &c)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), c.Interval)
	require.NotNil(t, c.On)
	assert.False(t, *c.On)

	_, err = decodeConfig("p", map[string]any{"lifetime": "off"}, &c)
	assert.ErrorContains(t, err, `p.lifetime: "off" is not a duration`)
	_, err = decodeConfig("p", map[string]any{"lifetime": "-1h"}, &c)
	assert.ErrorContains(t, err, `p.lifetime: -1h0m0s is negative`)
	_, err = decodeConfig("p", map[string]any{"on": "maybe"}, &c)
	assert.ErrorContains(t, err, `p.on: want true or false`)
}

// TestConfig_ObserveKeys: `metrics` and `tracing` are decoded as every
// option is, for any storage type, and a bad value names the key.
func TestConfig_ObserveKeys(t *testing.T) {
	s, err := New(context.Background(), map[string]any{"type": TypeMemory, "Metrics": "yes", "tracing": false})
	require.NoError(t, err)
	defer closeStorage(t, s)
	observed, ok := s.(*StorageObserved)
	require.True(t, ok, "got %T", s)
	assert.Equal(t, ObserveConfig{Backend: TypeMemory, Metrics: true}, observed.config)

	_, err = New(context.Background(), map[string]any{"type": TypeMemory, "tracing": "sometimes"})
	assert.ErrorContains(t, err, "sessionStorage.tracing: ")
}
