package gfsession_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gcfg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/goframe-contrib/gfsession"
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

// TestServer_ConfigFile is the end-to-end check of issue 2: a gf config file
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
