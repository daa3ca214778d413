package gfsession_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gfile"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/tcpproxy"
)

func TestRegister_Panics(t *testing.T) {
	factory := func(context.Context, map[string]any) (gsession.Storage, error) { return nil, nil }
	tests := []struct {
		name    string
		regName string
		factory gfsession.Factory
		want    string
	}{
		{"empty name", "", factory, "empty name"},
		{"nil factory", "test-nil-factory", nil, "is nil"},
		{"duplicate", gfsession.TypeMemory, factory, "twice"},
		{"duplicate in another case", "MEMORY", factory, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.PanicsWithValue(t, panicText(t, func() { gfsession.Register(tt.regName, tt.factory) }), func() {
				gfsession.Register(tt.regName, tt.factory)
			})
			assert.Contains(t, panicText(t, func() { gfsession.Register(tt.regName, tt.factory) }), tt.want)
		})
	}
}

func panicText(t *testing.T, fn func()) (text string) {
	t.Helper()
	defer func() { text, _ = recover().(string) }()
	fn()
	return ""
}

func TestRegister_Custom(t *testing.T) {
	var got map[string]any
	gfsession.Register("test-custom", func(_ context.Context, config map[string]any) (gsession.Storage, error) {
		got = config
		return gfsession.NewStorageMemory(), nil
	})
	assert.Contains(t, gfsession.Names(), "test-custom")
	assert.True(t, sort.StringsAreSorted(gfsession.Names()))
	st, err := gfsession.New(context.Background(), map[string]any{"type": "test-custom", "dsn": "x"})
	require.NoError(t, err)
	assert.IsType(t, &gfsession.StorageMemory{}, st)
	assert.Equal(t, map[string]any{"dsn": "x"}, got, "the factory gets the config without its type")
}

func TestNew_Config(t *testing.T) {
	fileTestDir, fileTestFile := t.TempDir(), filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(fileTestFile, nil, 0o600))
	tests := []struct {
		name    string
		config  map[string]any
		wantErr []string // substrings of the error; nil: no error
	}{
		{"memory", map[string]any{"type": "memory"}, nil},
		{"type in another case", map[string]any{"Type": "Memory"}, nil},
		{"type in upper case", map[string]any{"type": "MEMORY"}, nil},
		{"file type in upper case", map[string]any{"type": "FILE", "path": fileTestDir}, nil},
		{"memory with options", map[string]any{"type": "memory", "maxSessions": 10, "maxLifetime": "12h", "cleanupInterval": "-1s"}, nil},
		{"negative lifetime", map[string]any{"type": "memory", "maxLifetime": "-1h"}, []string{"sessionStorage.maxLifetime", "negative"}},
		{"memory options", map[string]any{"type": "memory", "MaxSessions": "10", "maxlifetime": "12h", "cleanupInterval": "30s"}, nil},
		{"missing type", map[string]any{"maxSessions": 1}, []string{"sessionStorage.type", "missing", "memory"}},
		{"unknown type", map[string]any{"type": "redsi"}, []string{"sessionStorage.type", `"redsi"`, "valid:", "memory"}},
		{"type not a string", map[string]any{"type": 1}, []string{"sessionStorage.type", "memory"}},
		{"unknown key", map[string]any{"type": "memory", "maxSession": 1}, []string{"sessionStorage.maxSession", "unknown key", "maxSessions"}},
		{"bare number duration", map[string]any{"type": "memory", "maxLifetime": 86400}, []string{"sessionStorage.maxLifetime", "unit", "86400s"}},
		{"bare number string", map[string]any{"type": "memory", "maxLifetime": "3600"}, []string{"sessionStorage.maxLifetime", "unit"}},
		{"bad duration", map[string]any{"type": "memory", "maxLifetime": "soon"}, []string{"sessionStorage.maxLifetime", `"soon"`}},
		{"bad number", map[string]any{"type": "memory", "maxSessions": "many"}, []string{"sessionStorage.maxSessions", "whole number"}},
		{"negative number", map[string]any{"type": "memory", "maxSessions": -5}, []string{"sessionStorage.maxSessions", ">= 0"}},
		{"unknown codec, file", map[string]any{"type": "file", "path": fileTestDir, "codec": "xml"}, []string{"sessionStorage.codec: ", `"xml"`}},
		{"path is a file", map[string]any{"type": "file", "path": fileTestFile}, []string{"sessionStorage.path: ", fileTestFile}},
		{"crypto key too short", map[string]any{"type": "file", "path": fileTestDir, "cryptoKeys": []any{"c2hvcnQ="}},
			[]string{"sessionStorage.cryptoKeys", "5 bytes, want 32"}},
		{"redis options in another case", map[string]any{"type": "REDIS-HASH", "Address": "127.0.0.1:1", "prefix": "p:", "noPrefix": true},
			[]string{"sessionStorage", "noPrefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := gfsession.New(context.Background(), tt.config)
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.NotNil(t, st)
				if c, ok := st.(interface{ Close(context.Context) error }); ok {
					require.NoError(t, c.Close(context.Background()))
				}
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// TestServerConfigHook guards the mechanism the config file support rests
// on: gf calling our gconv converter for ghttp.ServerConfig. If a gf upgrade
// stops calling it, this fails loudly.
func TestServerConfigHook(t *testing.T) {
	ready := gfsession.NewStorageMemory()
	t.Cleanup(func() { _ = ready.Close(context.Background()) })
	sessionPath, ownPath := t.TempDir(), t.TempDir()
	defaultPathName := fmt.Sprintf("gfsession-hook-%d", os.Getpid())
	t.Cleanup(func() { _ = os.RemoveAll(gfile.Join(gsession.DefaultStorageFilePath, defaultPathName)) })
	tests := []struct {
		name    string
		config  map[string]any
		check   func(t *testing.T, c ghttp.ServerConfig)
		wantErr []string
	}{
		{"short form", map[string]any{"sessionStorage": "memory", "sessionMaxAge": "2h", "address": ":0"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
				assert.Equal(t, 2*time.Hour, c.SessionMaxAge, "other keys convert as gf converts them")
				assert.Equal(t, ":0", c.Address)
				assert.Equal(t, "gfsessionid", c.SessionIdName, "defaults stay")
			}, nil},
		{"map form", map[string]any{"SessionStorage": map[string]any{"type": "memory", "maxSessions": 3}},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
			}, nil},
		{"snake case key", map[string]any{"session_storage": "memory"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
			}, nil},
		{"storage value passes through", map[string]any{"sessionStorage": ready},
			func(t *testing.T, c ghttp.ServerConfig) { assert.Same(t, ready, c.SessionStorage) }, nil},
		{"no storage key", map[string]any{"sessionIdName": "sid"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.Nil(t, c.SessionStorage)
				assert.Equal(t, "sid", c.SessionIdName)
			}, nil},
		{"a bad value of another key is gf's business", map[string]any{"sessionStorage": "memory", "sessionMaxAge": "2x", "sessionIdName": "sid"},
			func(t *testing.T, c ghttp.ServerConfig) {
				// gf alone skips the value that does not convert; so does the hook.
				want := ghttp.NewConfig()
				require.NoError(t, gconv.Scan(map[string]any{"sessionMaxAge": "2x", "sessionIdName": "sid"}, &want))
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
				assert.Equal(t, want.SessionMaxAge, c.SessionMaxAge)
				assert.Equal(t, "sid", c.SessionIdName)
			}, nil},
		{"type in upper case", map[string]any{"sessionStorage": "MEMORY"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
			}, nil},
		{"file folder from sessionPath and name", map[string]any{"name": "hook-app", "sessionPath": sessionPath, "sessionStorage": "file"},
			func(t *testing.T, c ghttp.ServerConfig) {
				requireFilePath(t, filepath.Join(sessionPath, "hook-app"), c.SessionStorage)
			}, nil},
		{"file folder from gf's default sessionPath", map[string]any{"name": defaultPathName, "sessionStorage": map[string]any{"type": "file"}},
			func(t *testing.T, c ghttp.ServerConfig) {
				// gf's own file storage uses the same folder: a site moving
				// from it keeps its sessions.
				requireFilePath(t, gfile.Join(gsession.DefaultStorageFilePath, defaultPathName), c.SessionStorage)
			}, nil},
		{"file path given", map[string]any{"name": "hook-app", "sessionPath": sessionPath, "sessionStorage": map[string]any{"type": "file", "path": ownPath}},
			func(t *testing.T, c ghttp.ServerConfig) { requireFilePath(t, ownPath, c.SessionStorage) }, nil},
		{"secure cookie defaults", map[string]any{"sessionStorage": "memory"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.True(t, c.CookieHttpOnly)
				assert.Equal(t, "lax", c.CookieSameSite)
				assert.False(t, c.CookieSecure, "Secure is the application's choice")
			}, nil},
		{"cookie settings given", map[string]any{"cookieHttpOnly": false, "cookieSameSite": "Strict", "cookieSecure": true},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.False(t, c.CookieHttpOnly)
				assert.Equal(t, "strict", c.CookieSameSite, "gf reads only lower case")
				assert.True(t, c.CookieSecure)
			}, nil},
		{"unknown type", map[string]any{"sessionStorage": "memroy"}, nil, []string{"server.sessionStorage.type: ", `"memroy"`, "memory"}},
		{"unknown key", map[string]any{"sessionStorage": map[string]any{"type": "memory", "bogus": 1}}, nil, []string{"server.sessionStorage.bogus: ", "unknown key"}},
		{"bad option value", map[string]any{"sessionStorage": map[string]any{"type": "file", "path": ownPath, "codec": "xml"}}, nil,
			[]string{"server.sessionStorage.codec: ", `"xml"`}},
		{"not a name or map", map[string]any{"sessionStorage": 42}, nil, []string{"server.sessionStorage: "}},
		{"unknown cookieSameSite", map[string]any{"cookieSameSite": "strcit"}, nil, []string{"server.cookieSameSite: ", `"strcit"`, `"lax"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ghttp.ConfigFromMap(tt.config)
			// The same map through Server.SetConfigWithMap, which g.Server() uses
			// to apply the config file.
			serr := ghttp.GetServer("hook-" + tt.name).SetConfigWithMap(tt.config)
			if tt.wantErr != nil {
				require.Error(t, err)
				require.Error(t, serr)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
					assert.Contains(t, serr.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			require.NoError(t, serr)
			tt.check(t, c)
		})
	}
}

// requireFilePath checks that `storage` is a file storage in folder `want`,
// and closes it.
func requireFilePath(t *testing.T, want string, storage gsession.Storage) {
	t.Helper()
	fs, ok := storage.(*gfsession.StorageFile)
	require.True(t, ok, "got %T", storage)
	t.Cleanup(func() { _ = fs.Close(context.Background()) })
	want, err := filepath.Abs(want)
	require.NoError(t, err)
	assert.Equal(t, want, fs.Path())
}

// TestServerConfigHook_SessionDurations checks the bare numbers that gf
// reads as nanoseconds in the session durations: start-up fails, naming
// the key, what gf would use and a fix; values with a unit, of any size,
// pass, and so does a time.Duration from code.
func TestServerConfigHook_SessionDurations(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   any
		want    time.Duration // without an error
		wantErr []string
	}{
		{"a day as an int", "sessionMaxAge", 86400, 0, []string{"server.sessionMaxAge: ", "86400", "86.4µs", `"24h"`}},
		{"a day as a string", "sessionMaxAge", "86400", 0, []string{"server.sessionMaxAge: ", "86.4µs", `"24h"`}},
		{"a day as a float", "sessionMaxAge", 86400.0, 0, []string{"server.sessionMaxAge: ", "86.4µs", `"24h"`}},
		{"an hour", "sessionMaxAge", 3600, 0, []string{"server.sessionMaxAge: ", "3.6µs", `"1h"`}},
		{"a fraction", "sessionMaxAge", "0.5", 0, []string{"server.sessionMaxAge: ", "unit"}},
		{"a day in nanoseconds", "sessionMaxAge", int64(24 * time.Hour), 0, []string{"server.sessionMaxAge: ", "24h0m0s", `"24h"`}},
		{"a day in nanoseconds as a string", "SessionMaxAge", "86400000000000", 0, []string{"server.SessionMaxAge: ", `"24h"`}},
		{"session cookie max age", "sessionCookieMaxAge", 86400, 0, []string{"server.sessionCookieMaxAge: ", "86.4µs", "cookie", `"24h"`}},
		{"with a unit", "sessionMaxAge", "24h", 24 * time.Hour, nil},
		{"gf's day unit", "sessionMaxAge", "7d", 7 * 24 * time.Hour, nil},
		{"with a unit, short", "sessionMaxAge", "200ms", 200 * time.Millisecond, nil},
		{"a time.Duration from code", "sessionMaxAge", 200 * time.Millisecond, 200 * time.Millisecond, nil},
		{"a time.Duration of nanoseconds from code", "sessionMaxAge", time.Duration(86400), 86400, nil},
		{"zero", "sessionMaxAge", 0, 0, nil},
		{"cookie max age with a unit", "sessionCookieMaxAge", "720h", 720 * time.Hour, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]any{tt.key: tt.value}
			c, err := ghttp.ConfigFromMap(m)
			serr := ghttp.GetServer(fmt.Sprintf("hook-durations-%d", i)).SetConfigWithMap(m)
			if tt.wantErr != nil {
				require.Error(t, err)
				require.Error(t, serr)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
					assert.Contains(t, serr.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			require.NoError(t, serr)
			got := c.SessionMaxAge
			if tt.key == "sessionCookieMaxAge" {
				got = c.SessionCookieMaxAge
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestServerConfigHook_KeepsEarlierCookieSettings: Server.SetConfigWithMap
// updates only the keys it is given, so a later call without the cookie
// keys keeps what an earlier one set.
func TestServerConfigHook_KeepsEarlierCookieSettings(t *testing.T) {
	s := ghttp.GetServer("hook-cookie-update")
	require.NoError(t, s.SetConfigWithMap(map[string]any{"cookieSameSite": "strict"}))
	require.NoError(t, s.SetConfigWithMap(map[string]any{"sessionIdName": "sid"}))
	assert.Equal(t, http.SameSiteStrictMode, s.GetCookieSameSite())
	assert.True(t, s.GetCookieHttpOnly())
}

// TestServerConfigHook_WarnsOnScriptReadableCookie: a config that turns
// HttpOnly off, or asks for SameSite=None without Secure, starts with a
// warning naming the key.
func TestServerConfigHook_WarnsOnScriptReadableCookie(t *testing.T) {
	logs := captureLog(t)
	_, err := ghttp.ConfigFromMap(map[string]any{"cookieHttpOnly": false})
	require.NoError(t, err)
	assert.Contains(t, logs(), "server.cookieHttpOnly is false")
	_, err = ghttp.ConfigFromMap(map[string]any{"cookieSameSite": "none"})
	require.NoError(t, err)
	assert.Contains(t, logs(), `server.cookieSameSite is "none" without cookieSecure`)
}

// TestNew_BackendCheck: a database storage whose database does not answer
// is built, with a warning naming the database and its address but not
// its password.
// With createTable (the default) the storage pings the database itself to
// create the table; the check reports that ping instead of sending another.
func TestNew_BackendCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	for _, createTable := range []bool{false, true} {
		t.Run(fmt.Sprintf("createTable=%v", createTable), func(t *testing.T) {
			logs := captureLog(t)
			st, err := gfsession.New(context.Background(), map[string]any{
				"type":        "DB",
				"link":        "mysql:root:s3cret@tcp(" + closed + ")/test",
				"createTable": createTable,
			})
			require.NoError(t, err, "an unreachable database must not stop start-up")
			t.Cleanup(func() { _ = st.(*gfsession.StorageDB).Close(context.Background()) })
			assert.Equal(t, 1, strings.Count(logs(), "gfsession: db storage: mysql at "+closed+"/test does not answer"))
			assert.NotContains(t, logs(), "s3cret")
		})
	}
}

// TestServerConfigHook_WarnsOnSharedFileFolder: a server left with gf's
// default name shares its file folder with every other such application,
// which a warning says at start-up; a named server gets no warning.
func TestServerConfigHook_WarnsOnSharedFileFolder(t *testing.T) {
	sessionPath := t.TempDir()
	logs := captureLog(t)
	c, err := ghttp.ConfigFromMap(map[string]any{"sessionPath": sessionPath, "sessionStorage": "file"})
	require.NoError(t, err)
	requireFilePath(t, filepath.Join(sessionPath, ghttp.DefaultServerName), c.SessionStorage)
	assert.Contains(t, logs(), "shares this folder")
	assert.Contains(t, logs(), "server.name")

	named := captureLog(t)
	c, err = ghttp.ConfigFromMap(map[string]any{"name": "shop", "sessionPath": sessionPath, "sessionStorage": "file"})
	require.NoError(t, err)
	requireFilePath(t, filepath.Join(sessionPath, "shop"), c.SessionStorage)
	assert.NotContains(t, named(), "shares this folder")
}

// TestServerConfigHook_WarningDoesNotHang: g.Server(name) converts the
// config while it holds one of gf's 64 instance locks, chosen by a hash of
// the name; a warning logged through g.Log(), whose instance may share that
// lock, would hang start-up for those names. The name below is one of
// them (found with gf's hash); the test fails by timing out.
func TestServerConfigHook_WarningDoesNotHang(t *testing.T) {
	djb := func(s string) uint32 {
		h := uint32(5381)
		for i := 0; i < len(s); i++ {
			h += h<<5 + uint32(s[i])
		}
		return h
	}
	loggerLock := djb("gf.core.component.logger.default") % 64
	name := ""
	for i := 0; name == ""; i++ {
		candidate := fmt.Sprintf("hook-hang-%d", i)
		if djb(fmt.Sprintf("gf.core.component.server.%v", []any{candidate}))%64 == loggerLock {
			name = candidate
		}
	}
	useConfigFile(t, "server:\n  "+name+":\n    cookieHttpOnly: false\n")
	logs := captureLog(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Server(name)
	}()
	require.Eventually(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "g.Server(%q) hangs", name)
	assert.Contains(t, logs(), "server.cookieHttpOnly is false")
}

// TestNew_BackendCheckPingsOnce: a db storage that creates its table pings
// the database itself; the start-up check reports that ping rather than
// waiting a second time for a database that does not answer.
func TestNew_BackendCheckPingsOnce(t *testing.T) {
	link := dbTestLink(t, "mysql")
	match := linkAddr.FindStringSubmatch(link)
	require.NotNil(t, match, "the test link %q names no @tcp(address)", link)
	proxy, err := tcpproxy.New(match[1])
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	require.NoError(t, proxy.Blackhole())
	const timeout = 300 * time.Millisecond
	logs := captureLog(t)
	began := time.Now()
	st, err := gfsession.New(context.Background(), map[string]any{
		"type":            "db",
		"link":            strings.Replace(link, match[0], "@tcp("+proxy.Addr()+")", 1),
		"timeout":         timeout.String(),
		"cleanupInterval": "-1s",
	})
	took := time.Since(began)
	require.NoError(t, err, "a database that does not answer must not stop start-up")
	t.Cleanup(func() { _ = st.(*gfsession.StorageDB).Close(context.Background()) })
	assert.Equal(t, 1, strings.Count(logs(), "does not answer (context deadline exceeded); starting anyway"), logs())
	// One wait of `timeout`, not that and the check's own 2 s on top.
	assert.Less(t, took, timeout+time.Second, "start-up waited twice for the database")
}
