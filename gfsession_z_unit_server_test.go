package gfsession_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/encoding/ghash"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gcfg"
	"github.com/gogf/gf/v2/os/glog"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// useConfigFile points gf's global configuration at a config.yaml holding
// `content` in a temporary folder, for the rest of the test.
func useConfigFile(t *testing.T, content string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(content), 0o600))
	adapter, err := gcfg.NewAdapterFile("config.yaml")
	require.NoError(t, err)
	require.NoError(t, adapter.SetPath(dir))
	previous := g.Cfg().GetAdapter()
	g.Cfg().SetAdapter(adapter)
	t.Cleanup(func() { g.Cfg().SetAdapter(previous) })
}

// startSessionApp starts g.Server(`name`) as configured by the current config
// file, with a small login/counter/logout API, and returns its base URL.
func startSessionApp(t *testing.T, name string) string {
	t.Helper()
	s := g.Server(name)
	s.Group("/", func(group *ghttp.RouterGroup) {
		group.POST("/login", func(r *ghttp.Request) {
			r.Session.MustSet("user", r.Get("user").String())
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.GET("/me", func(r *ghttp.Request) {
			r.Response.WriteJson(g.Map{
				"user":    r.Session.MustGet("user").String(),
				"counter": r.Session.MustGet("counter").Int64(),
			})
		})
		group.POST("/counter", func(r *ghttp.Request) {
			n := r.Session.MustGet("counter").Int64() + 1
			r.Session.MustSet("counter", n)
			r.Response.WriteJson(g.Map{"counter": n})
		})
		group.POST("/logout", func(r *ghttp.Request) {
			require.NoError(t, r.Session.RemoveAll())
			r.Response.WriteJson(g.Map{"ok": true})
		})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	return fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (c *client) do(method, path string) map[string]any {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	require.NoError(c.t, err)
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, resp.StatusCode, "%s %s: %s", method, path, body)
	var out map[string]any
	require.NoError(c.t, json.Unmarshal(body, &out), "%s %s: %s", method, path, body)
	return out
}

func (c *client) me() (user string, counter float64) {
	c.t.Helper()
	out := c.do(http.MethodGet, "/me")
	counter, _ = out["counter"].(float64)
	return fmt.Sprint(out["user"]), counter
}

// TestServer_ConfigFile is the end-to-end check of the config hook: a gf config file
// whose server.sessionStorage names a storage makes g.Server() use it, with
// no code beyond the blank import; a real ghttp server is driven over HTTP
// with a cookie jar through login, read, write, logout and idle expiry.
func TestServer_ConfigFile(t *testing.T) {
	const ttl = 600 * time.Millisecond
	tests := []struct {
		name    string
		storage string
	}{
		{"memory-short", `sessionStorage: "memory"`},
		{"memory-map", "sessionStorage:\n      type: memory\n      maxSessions: 100"},
	}
	var config string
	for _, tt := range tests {
		config += fmt.Sprintf("  e2e-%s:\n    address: \"127.0.0.1:0\"\n    dumpRouterMap: false\n    sessionMaxAge: %q\n    %s\n",
			tt.name, ttl.String(), tt.storage)
	}
	useConfigFile(t, "server:\n"+config)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := startSessionApp(t, "e2e-"+tt.name)
			alice, bob := newClient(t, base), newClient(t, base)

			user, _ := alice.me()
			assert.Empty(t, user, "anonymous before login")
			alice.do(http.MethodPost, "/login?user=alice")
			bob.do(http.MethodPost, "/login?user=bob")
			for i := 1; i <= 3; i++ {
				assert.EqualValues(t, i, alice.do(http.MethodPost, "/counter")["counter"])
			}
			user, counter := alice.me()
			assert.Equal(t, "alice", user)
			assert.EqualValues(t, 3, counter)
			user, counter = bob.me()
			assert.Equal(t, "bob", user, "sessions are per client")
			assert.EqualValues(t, 0, counter)

			// Sliding expiry: read-only requests, each within the TTL, keep
			// the session for several TTLs.
			for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline); {
				user, _ = alice.me()
				require.Equal(t, "alice", user, "read-only requests must keep the session alive")
				user, _ = bob.me()
				require.Equal(t, "bob", user, "read-only requests must keep the session alive")
				time.Sleep(ttl / 4)
			}

			alice.do(http.MethodPost, "/logout")
			user, _ = alice.me()
			assert.Empty(t, user, "logged out")
			user, _ = bob.me()
			assert.Equal(t, "bob", user, "another client's logout does not touch this session")

			// Idle expiry: left alone for longer than the TTL, bob is logged
			// out. This waits instead of polling: every request is a read that
			// would slide the TTL.
			time.Sleep(2 * ttl)
			user, _ = bob.me()
			assert.Empty(t, user, "an idle session must expire after sessionMaxAge")
		})
	}
}

// TestServer_ConfigFileError checks that a mistake in the config file stops
// g.Server() at start-up with an error that names the key.
func TestServer_ConfigFileError(t *testing.T) {
	useConfigFile(t, "server:\n  e2e-bad:\n    sessionStorage:\n      type: memory\n      maxLifetime: 3600\n")
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		g.Server("e2e-bad")
	}()
	require.NotNil(t, recovered, "g.Server must refuse a bad sessionStorage")
	err, ok := recovered.(error)
	require.True(t, ok, "panic value %v", recovered)
	assert.Contains(t, err.Error(), "sessionStorage.maxLifetime")
	assert.Contains(t, err.Error(), "unit")
}

// testLog receives what g.Log() logs in this test binary (which still
// prints it to stdout too) and keeps it while a test captures it
// (captureLog). It is set once, before any test runs: glog's SetWriter is
// not safe while other goroutines log.
var testLog = &logCapture{}

func init() { glog.Instance().SetWriter(testLog) }

// logCapture keeps what is written to it while capturing.
type logCapture struct {
	mu        sync.Mutex
	capturing int
	buf       bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.capturing > 0 {
		l.buf.Write(p)
	}
	return len(p), nil
}

// capturedLog reads what g.Log() logged since captureLog was called.
type capturedLog func() string

// String returns what was logged since captureLog was called.
func (l capturedLog) String() string { return l() }

// captureLog returns a function that reads what g.Log() logged since the
// call, until the end of the test.
func captureLog(t *testing.T) capturedLog {
	t.Helper()
	require.Same(t, g.Log(), glog.Instance(), "g.Log() is glog's default logger")
	testLog.mu.Lock()
	testLog.capturing++
	start := testLog.buf.Len()
	testLog.mu.Unlock()
	t.Cleanup(func() {
		testLog.mu.Lock()
		defer testLog.mu.Unlock()
		if testLog.capturing--; testLog.capturing == 0 {
			testLog.buf.Reset()
		}
	})
	return func() string {
		testLog.mu.Lock()
		defer testLog.mu.Unlock()
		return testLog.buf.String()[start:]
	}
}

// sessionFiles returns the session files under `dir`, at any depth.
func sessionFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".session") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

// TestServer_FileFolderPerApp: applications with `sessionStorage: "file"`
// and different TTLs each keep their sessions in their own folder, gf's
// `sessionPath` joined with the server's name (the config node's name under
// g.Server(name), else the `name` key), so that the cleaner of one with a
// short TTL never deletes the sessions of another.
func TestServer_FileFolderPerApp(t *testing.T) {
	sessionPath := t.TempDir()
	useConfigFile(t, fmt.Sprintf(`server:
  files-a:
    address: "127.0.0.1:0"
    dumpRouterMap: false
    sessionPath: %[1]q
    sessionMaxAge: "300ms"
    sessionStorage: "file"
  files-b:
    address: "127.0.0.1:0"
    dumpRouterMap: false
    sessionPath: %[1]q
    sessionMaxAge: "1h"
    sessionStorage: "file"
`, sessionPath))
	a, b := newClient(t, startSessionApp(t, "files-a")), newClient(t, startSessionApp(t, "files-b"))
	a.do(http.MethodPost, "/login?user=alice")
	b.do(http.MethodPost, "/login?user=bob")
	aDir, bDir := filepath.Join(sessionPath, "files-a"), filepath.Join(sessionPath, "files-b")
	aFiles, bFiles := sessionFiles(t, aDir), sessionFiles(t, bDir)
	require.Len(t, aFiles, 1, "files-a's session is in its own folder")
	require.Len(t, bFiles, 1, "files-b's session is in its own folder")

	// A third application, with a short TTL and a cleaner running every
	// 20ms; its config is built here, so that its storage can be closed.
	config, err := ghttp.ConfigFromMap(map[string]any{
		"name":           "files-c",
		"address":        "127.0.0.1:0",
		"dumpRouterMap":  false,
		"sessionPath":    sessionPath,
		"sessionMaxAge":  "300ms",
		"sessionStorage": map[string]any{"type": "file", "cleanupInterval": "20ms"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = config.SessionStorage.(*gfsession.StorageFile).Close(context.Background()) })
	s := ghttp.GetServer("files-c-test")
	require.NoError(t, s.SetConfig(config))
	s.BindHandler("POST:/login", func(r *ghttp.Request) {
		r.Session.MustSet("user", r.Get("user").String())
		r.Response.WriteJson(g.Map{"ok": true})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	newClient(t, fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())).do(http.MethodPost, "/login?user=carol")
	cDir := filepath.Join(sessionPath, "files-c")
	require.Len(t, sessionFiles(t, cDir), 1, "files-c's session is in its own folder")

	// files-c's cleaner removes its own idle session ...
	require.Eventually(t, func() bool { return len(sessionFiles(t, cDir)) == 0 },
		5*time.Second, 20*time.Millisecond, "files-c's cleaner removes its idle session")
	// ... and leaves the other applications' sessions alone, though they
	// are idle for longer than its TTL.
	assert.Equal(t, aFiles, sessionFiles(t, aDir))
	assert.Equal(t, bFiles, sessionFiles(t, bDir))
	user, _ := b.me()
	assert.Equal(t, "bob", user, "files-b's user stays logged in")
}

// TestServer_SessionCookieDefaults reads the Set-Cookie header of a login:
// the session cookie is HttpOnly and SameSite=Lax unless the config says
// otherwise, and Secure only when configured.
func TestServer_SessionCookieDefaults(t *testing.T) {
	useConfigFile(t, `server:
  cookie-default:
    address: "127.0.0.1:0"
    dumpRouterMap: false
    sessionStorage: "memory"
  cookie-configured:
    address: "127.0.0.1:0"
    dumpRouterMap: false
    sessionStorage: "memory"
    cookieHttpOnly: false
    cookieSameSite: "Strict"
    cookieSecure: true
`)
	login := func(base string) *http.Cookie {
		t.Helper()
		resp, err := http.Post(base+"/login?user=alice", "text/plain", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, c := range resp.Cookies() {
			if c.Name == "gfsessionid" {
				return c
			}
		}
		require.Fail(t, "no session cookie", "Set-Cookie: %q", resp.Header.Values("Set-Cookie"))
		return nil
	}

	c := login(startSessionApp(t, "cookie-default"))
	assert.True(t, c.HttpOnly, "Set-Cookie: %s", c.Raw)
	assert.Equal(t, http.SameSiteLaxMode, c.SameSite, "Set-Cookie: %s", c.Raw)
	assert.False(t, c.Secure, "Secure is the application's choice: Set-Cookie: %s", c.Raw)

	logs := captureLog(t)
	c = login(startSessionApp(t, "cookie-configured"))
	assert.False(t, c.HttpOnly, "Set-Cookie: %s", c.Raw)
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite, "Set-Cookie: %s", c.Raw)
	assert.True(t, c.Secure, "Set-Cookie: %s", c.Raw)
	assert.Contains(t, logs(), "server.cookieHttpOnly is false", "turning HttpOnly off is warned about")
}

// TestServer_BackendDownAtStart: a server whose Redis does not answer at
// start-up starts, with a warning naming the Redis address, and its
// sessions work once a Redis listens there.
func TestServer_BackendDownAtStart(t *testing.T) {
	srv := testredis.Start(t)
	srv.Kill(t)
	logs := captureLog(t)
	s := ghttp.GetServer("backend-down")
	require.NoError(t, s.SetConfigWithMap(map[string]any{
		"address":       "127.0.0.1:0",
		"dumpRouterMap": false,
		"sessionStorage": map[string]any{
			"type":    "Redis",
			"address": srv.Addr,
			"prefix":  "backend-down:",
		},
	}))
	assert.Contains(t, logs(), "gfsession: redis storage: Redis at "+srv.Addr+" does not answer")
	s.Group("/", func(group *ghttp.RouterGroup) {
		group.POST("/login", func(r *ghttp.Request) {
			r.Session.MustSet("user", r.Get("user").String())
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.GET("/me", func(r *ghttp.Request) {
			r.Response.WriteJson(g.Map{"user": r.Session.MustGet("user").String()})
		})
	})
	require.NoError(t, s.Start(), "an unreachable backend must not stop a deploy")
	t.Cleanup(func() { _ = s.Shutdown() })

	srv.Restart(t)
	alice := newClient(t, fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort()))
	alice.do(http.MethodPost, "/login?user=alice")
	user, _ := alice.me()
	assert.Equal(t, "alice", user)
}

// lockCheckStorages are the storages built through the "lock-check" type,
// closed by the test that made them.
var lockCheckStorages struct {
	sync.Mutex
	list []gsession.Storage
}

func init() {
	// "lock-check" builds the storage of type `backend` through New, as the
	// config hook does, and keeps it to be closed.
	gfsession.Register("lock-check", func(ctx context.Context, m map[string]any) (gsession.Storage, error) {
		config := make(map[string]any, len(m))
		for k, v := range m {
			config[k] = v
		}
		config["type"], config["backend"] = config["backend"], nil
		delete(config, "backend")
		s, err := gfsession.New(ctx, config)
		if err == nil {
			lockCheckStorages.Lock()
			lockCheckStorages.list = append(lockCheckStorages.list, s)
			lockCheckStorages.Unlock()
		}
		return s, err
	})
}

// serverNamesSharing returns `n` server names starting with `prefix` for
// which g.Server(name), while it applies the server config, holds the same
// lock of gf's instance registry as the component of registry key `key`
// (such as "gf.core.component.redis.default", what g.Redis("default")
// takes), then one name for which it holds another. The registry has 64
// locks, chosen by the DJB hash of the key; g.Server's key is
// "gf.core.component.server.[name]".
func serverNamesSharing(prefix, key string, n int) []string {
	const shards = 64
	shardOf := func(k string) uint32 { return ghash.DJB([]byte(k)) % shards }
	var names, others []string
	for i := 0; len(names) < n || len(others) < 1; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if shardOf("gf.core.component.server.["+name+"]") == shardOf(key) {
			names = append(names, name)
		} else {
			others = append(others, name)
		}
	}
	names = append(names[:n], others[0])
	return names
}

// TestServer_ConfigGroupAnyServerName checks that g.Server(name) returns,
// whatever the server name, when the server's session storage names a group of the
// config file's "redis" or "database" node. g.Server holds a lock of gf's
// instance registry while it applies the config; a storage taking the group's
// client through g.Redis or g.DB, which take a lock of the same registry,
// would wait forever for the names whose locks are the same; the test uses
// such names.
func TestServer_ConfigGroupAnyServerName(t *testing.T) {
	redisSrv := testredis.Start(t)
	link := dbTestLink(t, "mysql")
	table := testTable(t, openTestDB(t, link))
	// Groups no other test configured in code: gf's g.DB takes its lock
	// only until it has registered the group with gdb.
	dbGroup, redisGroup := "lockcheck"+table, "lockcheck"+table
	tests := []struct {
		name, key, config string
	}{
		{"redis", "gf.core.component.redis." + redisGroup, fmt.Sprintf("redis:\n  %s:\n    address: %q\n", redisGroup, redisSrv.Addr) +
			"server:\n  address: \"127.0.0.1:0\"\n  dumpRouterMap: false\n" +
			"  sessionStorage:\n    type: lock-check\n    backend: redis\n    redis: \"" + redisGroup + "\"\n    prefix: \"lock-check:\"\n"},
		{"db", "gf.core.component.database." + dbGroup, fmt.Sprintf("database:\n  %s:\n    link: %q\n", dbGroup, link) +
			"server:\n  address: \"127.0.0.1:0\"\n  dumpRouterMap: false\n" +
			fmt.Sprintf("  sessionStorage:\n    type: lock-check\n    backend: db\n    database: %s\n    table: %s\n    cleanupInterval: \"off\"\n", dbGroup, table)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			useConfigFile(t, tt.config)
			t.Cleanup(func() {
				lockCheckStorages.Lock()
				defer lockCheckStorages.Unlock()
				for _, s := range lockCheckStorages.list {
					if c, ok := s.(interface{ Close(context.Context) error }); ok {
						assert.NoError(t, c.Close(context.Background()))
					}
				}
				lockCheckStorages.list = nil
			})
			names := serverNamesSharing("lock-check-"+tt.name+"-", tt.key, 3)
			for _, name := range names {
				done := make(chan struct{})
				go func() {
					defer close(done)
					g.Server(name)
				}()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					// The goroutine stays blocked: fail the whole run, as
					// every later g.Server of that lock would block too.
					t.Fatalf("g.Server(%q) did not return: start-up deadlocked", name)
				}
			}
			lockCheckStorages.Lock()
			n := len(lockCheckStorages.list)
			lockCheckStorages.Unlock()
			assert.Equal(t, len(names), n, "every server got its storage")
		})
	}
}
