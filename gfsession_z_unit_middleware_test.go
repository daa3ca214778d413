package gfsession_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
)

// startMiddlewareApp starts a ghttp server using `storage` and
// gfsession.Middleware, with login (which rotates the id), me and counter,
// and sessions that expire after `ttl` (default: gf's 24h).
func startMiddlewareApp(t *testing.T, storage gsession.Storage, ttl ...time.Duration) string {
	t.Helper()
	s := g.Server(fmt.Sprintf("mw-%s-%d", t.Name(), time.Now().UnixNano()))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetSessionStorage(storage)
	if len(ttl) > 0 {
		s.SetSessionMaxAge(ttl[0])
	}
	s.Use(gfsession.Middleware)
	s.Group("/", func(group *ghttp.RouterGroup) {
		group.POST("/login", func(r *ghttp.Request) {
			_, err := gfsession.Regenerate(r)
			require.NoError(t, err)
			r.Session.MustSet("user", r.Get("user").String())
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.GET("/me", func(r *ghttp.Request) {
			r.Response.WriteJson(g.Map{"user": r.Session.MustGet("user").String(), "counter": r.Session.MustGet("counter").Int()})
		})
		group.POST("/counter", func(r *ghttp.Request) {
			r.Session.MustSet("counter", r.Session.MustGet("counter").Int()+1)
			r.Response.WriteJson(g.Map{"ok": true})
		})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	return fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())
}

// call sends one request with the session id `sid` in the cookie (when not
// empty) and returns the JSON body and the session id the server set, if any.
func call(t *testing.T, method, url, sid string) (body map[string]any, setId string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if sid != "" {
		req.Header.Set("Cookie", "gfsessionid="+sid)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	require.NoError(t, json.Unmarshal(raw, &body), string(raw))
	for _, c := range resp.Cookies() {
		if c.Name == "gfsessionid" {
			setId = c.Value
		}
	}
	return body, setId
}

// assertNotStored checks that `storage` holds nothing under `id`, an id the
// client invented.
func assertNotStored(t *testing.T, storage gsession.Storage, id string) {
	t.Helper()
	data, err := storage.GetSession(context.Background(), id, time.Minute)
	require.NoError(t, err)
	assert.Nil(t, data, "nothing may be stored under the invented id")
}

func TestMiddleware_SecureIds(t *testing.T) {
	base := startMiddlewareApp(t, newMemory(t))
	upper := false
	for i := 0; i < 30; i++ {
		_, id := call(t, http.MethodPost, base+"/counter", "")
		require.Len(t, id, 32, "a new session gets a 192-bit id")
		require.True(t, gfsession.IsValidSessionId(id), id)
		upper = upper || strings.ToLower(id) != id
	}
	assert.True(t, upper, "ids come from NewSessionId, not from ghttp's lower-case guid")
}

func TestMiddleware_Fixation(t *testing.T) {
	storage := newMemory(t)
	base := startMiddlewareApp(t, storage)
	invented := "attackerChoseThisId0000000000000"

	// An id the storage never issued is replaced before the handler runs.
	_, id := call(t, http.MethodPost, base+"/login?user=victim", invented)
	require.NotEmpty(t, id)
	assert.NotEqual(t, invented, id)
	assertNotStored(t, storage, invented)
	body, setId := call(t, http.MethodGet, base+"/me", id)
	assert.Equal(t, "victim", body["user"])
	assert.Empty(t, setId, "a known id is kept")

	// Hostile ids are replaced the same way and never reach the storage.
	for _, hostile := range []string{"../x", "a/b", strings.Repeat("A", 10*1024), "*", "{tag}x", "a%00b"} {
		body, setId = call(t, http.MethodGet, base+"/me", hostile)
		assert.Empty(t, body["user"], hostile)
		assert.True(t, setId == "" || gfsession.IsValidSessionId(setId), "%.20q got %q", hostile, setId)
		assert.NotEqual(t, hostile, setId)
	}
}

func TestMiddleware_RegenerateOnLogin(t *testing.T) {
	storage := newMemory(t)
	base := startMiddlewareApp(t, storage)
	_, anon := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, anon)

	// An attacker who knows `anon` (a real session) planted it; login rotates it.
	_, loggedIn := call(t, http.MethodPost, base+"/login?user=ann", anon)
	require.NotEmpty(t, loggedIn)
	assert.NotEqual(t, anon, loggedIn)
	body, _ := call(t, http.MethodGet, base+"/me", loggedIn)
	assert.Equal(t, "ann", body["user"])
	assert.EqualValues(t, 1, body["counter"], "data survives the rotation")

	data, err := storage.GetSession(context.Background(), anon, time.Minute)
	require.NoError(t, err)
	assert.Nil(t, data, "the old id is deleted")
	body, setId := call(t, http.MethodGet, base+"/me", anon)
	assert.Empty(t, body["user"], "the planted id no longer logs anyone in")
	assert.NotEqual(t, anon, setId)
}

// failingOnce is a storage whose next GetSession or SetSession fails once
// when armed, as a storage does during a short outage.
type failingOnce struct {
	gsession.Storage
	failLoad, failWrite atomic.Bool
}

func (f *failingOnce) GetSession(ctx context.Context, id string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if f.failLoad.CompareAndSwap(true, false) {
		return nil, errors.New("backend unreachable")
	}
	return f.Storage.GetSession(ctx, id, ttl)
}

func (f *failingOnce) SetSession(ctx context.Context, id string, data *gmap.StrAnyMap, ttl time.Duration) error {
	if f.failWrite.CompareAndSwap(true, false) {
		return errors.New("backend unreachable")
	}
	return f.Storage.SetSession(ctx, id, data, ttl)
}

// TestMiddleware_FixationDuringOutage checks that the client's id is not
// adopted when the storage fails while the middleware checks it: a load
// that fails (the storage back by the time the handler runs) goes on with
// a fresh id, and a failed replacement stops the request.
func TestMiddleware_FixationDuringOutage(t *testing.T) {
	storage := &failingOnce{Storage: newMemory(t)}
	base := startMiddlewareApp(t, storage)
	invented := "attackerChoseThisId0000000000001"

	storage.failLoad.Store(true)
	_, id := call(t, http.MethodPost, base+"/counter", invented)
	assert.False(t, storage.failLoad.Load(), "the load failed once")
	require.NotEmpty(t, id)
	assert.NotEqual(t, invented, id)
	assertNotStored(t, storage, invented)
	body, _ := call(t, http.MethodGet, base+"/me", id)
	assert.EqualValues(t, 1, body["counter"], "the write went to the fresh id")

	storage.failWrite.Store(true)
	req, err := http.NewRequest(http.MethodPost, base+"/counter", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", "gfsessionid="+invented)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "replacing the id failed: the handler must not run")
	assertNotStored(t, storage, invented)
}
