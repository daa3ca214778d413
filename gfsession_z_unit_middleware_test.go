package gfsession_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// appOptions configures startApp.
type appOptions struct {
	ttl    time.Duration                  // sessionMaxAge; 0: gf's 24h
	routes func(group *ghttp.RouterGroup) // routes beside the standard ones
}

// startApp starts a ghttp server on a free port using `storage` and
// gfsession.Middleware, stopped when the test ends, and returns its base
// URL. Its routes: POST /login?user= (rotates the id), GET /me, POST
// /counter, POST /logout, GET /ping (does not touch the session), and
// `opt.routes`.
func startApp(t *testing.T, storage gsession.Storage, opt appOptions) string {
	t.Helper()
	s := g.Server(fmt.Sprintf("mw-%s-%d", t.Name(), time.Now().UnixNano()))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetSessionStorage(storage)
	if opt.ttl > 0 {
		s.SetSessionMaxAge(opt.ttl)
	}
	s.Use(gfsession.Middleware)
	s.Group("/", func(group *ghttp.RouterGroup) {
		group.POST("/login", func(r *ghttp.Request) {
			if _, err := gfsession.Regenerate(r); err != nil {
				r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
				return
			}
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
		group.POST("/logout", func(r *ghttp.Request) {
			if err := r.Session.RemoveAll(); err != nil {
				r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.GET("/ping", func(r *ghttp.Request) {
			r.Response.WriteJson(g.Map{"pong": true})
		})
		if opt.routes != nil {
			opt.routes(group)
		}
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	return fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())
}

// startMiddlewareApp is startApp with the standard routes and sessions
// that expire after `ttl` (default: gf's 24h).
func startMiddlewareApp(t *testing.T, storage gsession.Storage, ttl ...time.Duration) string {
	t.Helper()
	var opt appOptions
	if len(ttl) > 0 {
		opt.ttl = ttl[0]
	}
	return startApp(t, storage, opt)
}

// reply is a server's answer as the tests look at it.
type reply struct {
	status int
	raw    string
	body   map[string]any // the JSON body, or nil
	cookie *http.Cookie   // the session cookie the server set, or nil
}

// sessionCookie is ghttp's default session id name.
const sessionCookie = "gfsessionid"

// send sends one request with the session id `sid` in the cookie (when not
// empty). It returns an error rather than failing the test, so that it can
// run outside the test's goroutine.
func send(method, url, sid string) (reply, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return reply{}, err
	}
	if sid != "" {
		req.Header.Set("Cookie", sessionCookie+"="+sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	res := reply{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &res.body)
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			res.cookie = c
		}
	}
	return res, nil
}

// mustSend is send that fails the test on a transport error.
func mustSend(t *testing.T, method, url, sid string) reply {
	t.Helper()
	res, err := send(method, url, sid)
	require.NoError(t, err)
	return res
}

// call sends one request that must succeed with a JSON body and returns
// that body and the session id the server set, if any.
func call(t *testing.T, method, url, sid string) (body map[string]any, setId string) {
	t.Helper()
	res := mustSend(t, method, url, sid)
	require.Equal(t, http.StatusOK, res.status, res.raw)
	require.NotNil(t, res.body, res.raw)
	if res.cookie != nil {
		setId = res.cookie.Value
	}
	return res.body, setId
}

// assertNotStored checks that `storage` holds nothing under `id`, an id the
// client invented.
func assertNotStored(t *testing.T, storage gsession.Storage, id string) {
	t.Helper()
	data, err := storage.GetSession(context.Background(), id, time.Minute)
	require.NoError(t, err)
	assert.Nil(t, data, "nothing may be stored under the invented id")
}

// storedValue returns `key` of session `id` as `storage` holds it.
func storedValue(t *testing.T, storage gsession.Storage, id, key string) any {
	t.Helper()
	data, err := storage.GetSession(context.Background(), id, time.Minute)
	require.NoError(t, err)
	if data == nil {
		return nil
	}
	return data.Get(key)
}

// faultyStorage counts the calls that reach the storage it wraps, and fails
// the next load or write when armed, as a storage does during a short
// outage.
type faultyStorage struct {
	gsession.Storage
	failLoad, failWrite             atomic.Bool
	writeErr                        error // what a failed write returns; nil: "backend unreachable"
	loads, writes, touches, removes atomic.Int64
	lastWriteId                     atomic.Value // the id of the last write
}

func (f *faultyStorage) GetSession(ctx context.Context, id string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	f.loads.Add(1)
	if f.failLoad.CompareAndSwap(true, false) {
		return nil, errors.New("backend unreachable")
	}
	return f.Storage.GetSession(ctx, id, ttl)
}

func (f *faultyStorage) SetSession(ctx context.Context, id string, data *gmap.StrAnyMap, ttl time.Duration) error {
	f.writes.Add(1)
	f.lastWriteId.Store(id)
	if f.failWrite.CompareAndSwap(true, false) {
		if f.writeErr != nil {
			return f.writeErr
		}
		return errors.New("backend unreachable")
	}
	return f.Storage.SetSession(ctx, id, data, ttl)
}

func (f *faultyStorage) UpdateTTL(ctx context.Context, id string, ttl time.Duration) error {
	f.touches.Add(1)
	return f.Storage.UpdateTTL(ctx, id, ttl)
}

func (f *faultyStorage) RemoveAll(ctx context.Context, id string) error {
	f.removes.Add(1)
	return f.Storage.RemoveAll(ctx, id)
}

// calls returns the storage calls counted since the last reset, and resets.
func (f *faultyStorage) calls() (loads, writes, touches, removes int64) {
	return f.loads.Swap(0), f.writes.Swap(0), f.touches.Swap(0), f.removes.Swap(0)
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

	// A handler that only writes gets a fresh id too.
	_, id = call(t, http.MethodPost, base+"/counter", invented)
	require.NotEmpty(t, id)
	assert.NotEqual(t, invented, id)
	assertNotStored(t, storage, invented)

	// Hostile ids are dropped the same way and never reach the storage.
	for _, hostile := range []string{"../x", "a/b", strings.Repeat("A", 10*1024), "*", "{tag}x", "a%00b"} {
		body, setId = call(t, http.MethodGet, base+"/me", hostile)
		assert.Empty(t, body["user"], hostile)
		assert.Empty(t, setId, "%.20q: a read-only request gets no cookie", hostile)
		_, setId = call(t, http.MethodPost, base+"/counter", hostile)
		assert.True(t, gfsession.IsValidSessionId(setId), "%.20q got %q", hostile, setId)
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
	body, _ = call(t, http.MethodGet, base+"/me", anon)
	assert.Empty(t, body["user"], "the planted id no longer logs anyone in")
	_, setId := call(t, http.MethodPost, base+"/counter", anon)
	assert.NotEqual(t, anon, setId, "nor can it be written to")
}

// TestMiddleware_OldIdAfterLogin checks that requests a browser sent with
// the session id it had before a login, whose responses arrive after the
// login's, do not overwrite the new session cookie: replacing an unknown id
// sends a cookie only when the handler writes.
func TestMiddleware_OldIdAfterLogin(t *testing.T) {
	base := startMiddlewareApp(t, newMemory(t))
	_, anon := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, anon)

	// Read-only requests with the old id, before, during and after the
	// login; at least a few of them reach the server after it.
	var (
		loggedIn atomic.Bool
		after    atomic.Int64
		cookies  atomic.Int64
		wg       sync.WaitGroup
		errs     = make(chan error, 4)
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 200 && after.Load() < 20; n++ {
				done := loggedIn.Load()
				res, err := send(http.MethodGet, base+"/me", anon)
				if err != nil || res.status != http.StatusOK {
					errs <- fmt.Errorf("GET /me: %v %d %s", err, res.status, res.raw)
					return
				}
				if res.cookie != nil {
					cookies.Add(1)
				}
				if done {
					after.Add(1)
				}
			}
		}()
	}
	_, newId := call(t, http.MethodPost, base+"/login?user=ann", anon)
	require.NotEmpty(t, newId)
	loggedIn.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, after.Load(), int64(20), "requests with the old id after the login")
	assert.Zero(t, cookies.Load(), "a read-only request with an unknown id must not set a session cookie")

	body, setId := call(t, http.MethodGet, base+"/me", newId)
	assert.Equal(t, "ann", body["user"], "the login cookie still works")
	assert.Empty(t, setId)
}

// TestMiddleware_StorageCalls counts what reaches the storage per request:
// one load for a request that carries an id, one close (a write when the
// handler changed the session, else a TTL refresh of a live session), and
// nothing for an id the storage does not hold beyond the load.
func TestMiddleware_StorageCalls(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	base := startMiddlewareApp(t, storage)
	_, id := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, id)
	const invented = "neverIssuedByTheStorage000000000"

	tests := []struct {
		name                            string
		method, path, sid               string
		loads, writes, touches, removes int64
		cookie                          bool
	}{
		{"known id, read", http.MethodGet, "/me", id, 1, 0, 1, 0, false},
		{"known id, session unused", http.MethodGet, "/ping", id, 1, 0, 1, 0, false},
		{"known id, write", http.MethodPost, "/counter", id, 1, 1, 0, 0, false},
		{"unknown id, read", http.MethodGet, "/me", invented, 1, 0, 0, 0, false},
		{"unknown id, session unused", http.MethodGet, "/ping", invented, 1, 0, 0, 0, false},
		{"unknown id, write", http.MethodPost, "/counter", invented, 1, 1, 0, 0, true},
		{"no id, read", http.MethodGet, "/me", "", 0, 0, 0, 0, false},
		{"no id, write", http.MethodPost, "/counter", "", 0, 1, 0, 0, true},
		{"hostile id, read", http.MethodGet, "/me", "../../x", 0, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storage.calls()
			res := mustSend(t, tt.method, base+tt.path, tt.sid)
			require.Equal(t, http.StatusOK, res.status, res.raw)
			loads, writes, touches, removes := storage.calls()
			assert.Equal(t, tt.loads, loads, "loads")
			assert.Equal(t, tt.writes, writes, "writes")
			assert.Equal(t, tt.touches, touches, "TTL refreshes")
			assert.Equal(t, tt.removes, removes, "deletes")
			assert.Equal(t, tt.cookie, res.cookie != nil, "session cookie")
			if res.cookie != nil {
				assert.NotEqual(t, tt.sid, res.cookie.Value)
				assert.Equal(t, res.cookie.Value, storage.lastWriteId.Load(), "the cookie names the session written")
			}
		})
	}
	body, _ := call(t, http.MethodGet, base+"/me", id)
	assert.EqualValues(t, 2, body["counter"])
}

// TestMiddleware_UnknownIdRedisCommands counts Redis commands (INFO
// commandstats) for requests with an id the storage does not hold: a
// read-only one costs the load and nothing else (no DEL), a writing one the
// load and the write of its new session.
func TestMiddleware_UnknownIdRedisCommands(t *testing.T) {
	srv := testredis.Start(t)
	storage := newRedisStorage(t, gfsession.TypeRedis, newGredis(t, &gredis.Config{Address: srv.Addr}), gfsession.RedisConfig{})
	base := startMiddlewareApp(t, storage)
	_, id := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, id)
	const invented = "neverIssuedByTheStorage000000000"

	total := func(stats map[string]int) (n int) {
		for _, c := range stats {
			n += c
		}
		return n
	}
	// The scripts' first use on the server (NOSCRIPT, then EVAL) is not
	// per request.
	call(t, http.MethodGet, base+"/me", gfsession.NewSessionId())
	redisResetStats(t, srv)
	body, setId := call(t, http.MethodGet, base+"/me", invented)
	assert.Empty(t, body["user"])
	assert.Empty(t, setId, "no session cookie for a read-only request")
	stats := redisCommandStats(t, srv)
	assert.Zero(t, stats["del"], "no DEL: %v", stats)
	assert.Zero(t, stats["rename"], "nothing moved: %v", stats)
	// The load, and one script that looks for a session gf's storage
	// left under the id itself (EXISTS and TYPE run inside it).
	assert.Equal(t, map[string]int{"getex": 1, "evalsha": 1, "exists": 1, "type": 1}, stats)

	redisResetStats(t, srv)
	body, setId = call(t, http.MethodGet, base+"/me", id)
	assert.EqualValues(t, 1, body["counter"])
	assert.Empty(t, setId)
	stats = redisCommandStats(t, srv)
	assert.Equal(t, 1, total(stats), "a read-only request with a live session: one load: %v", stats)

	redisResetStats(t, srv)
	_, setId = call(t, http.MethodPost, base+"/counter", invented)
	require.NotEmpty(t, setId)
	assert.NotEqual(t, invented, setId)
	stats = redisCommandStats(t, srv)
	assert.Zero(t, stats["del"], "no DEL: %v", stats)
	assert.Equal(t, map[string]int{"getex": 1, "evalsha": 1, "exists": 1, "type": 1, "set": 1}, stats,
		"the load, the look for gf's session, and the new session's write")
	assert.EqualValues(t, 1, storedValue(t, storage, setId, "counter"))
}

// TestMiddleware_CustomIds checks that a handler behind the middleware can
// still choose the session id with r.Session.SetId and SetIdFunc.
func TestMiddleware_CustomIds(t *testing.T) {
	storage := newMemory(t)
	const prefix = "fromHandler"
	fail := func(r *ghttp.Request, err error) bool {
		if err != nil {
			r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
		}
		return err != nil
	}
	base := startApp(t, storage, appOptions{routes: func(group *ghttp.RouterGroup) {
		group.POST("/set-id", func(r *ghttp.Request) {
			if fail(r, r.Session.SetId(r.Get("id").String())) || fail(r, r.Session.Set("custom", true)) {
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.POST("/id-func", func(r *ghttp.Request) {
			err := r.Session.SetIdFunc(func(time.Duration) string { return prefix + gfsession.NewSessionId()[:16] })
			if fail(r, err) {
				return
			}
			if r.Get("rotate").Bool() {
				if _, err = gfsession.Regenerate(r); fail(r, err) {
					return
				}
			}
			if fail(r, r.Session.Set("custom", true)) {
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
	}})
	_, known := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, known)

	for _, sid := range []string{known, "", "neverIssuedByTheStorage000000000"} {
		custom := "customId" + gfsession.NewSessionId()[:16]
		_, setId := call(t, http.MethodPost, base+"/set-id?id="+custom, sid)
		assert.Equal(t, custom, setId, "SetId with cookie %q", sid)
		assert.Equal(t, true, storedValue(t, storage, custom, "custom"))
	}
	for _, sid := range []string{"", "neverIssuedByTheStorage000000000"} {
		_, setId := call(t, http.MethodPost, base+"/id-func", sid)
		assert.True(t, strings.HasPrefix(setId, prefix), "SetIdFunc with cookie %q: %q", sid, setId)
		assert.Equal(t, true, storedValue(t, storage, setId, "custom"))
	}
	_, setId := call(t, http.MethodPost, base+"/id-func?rotate=1", known)
	assert.True(t, strings.HasPrefix(setId, prefix), "SetIdFunc, then Regenerate: %q", setId)
	assert.EqualValues(t, 1, storedValue(t, storage, setId, "counter"), "the session's data moved to the new id")
	assert.Nil(t, storedValue(t, storage, known, "counter"), "the old id is deleted")
}

// TestMiddleware_StorageOutage checks what a storage failure does to a
// request: a failed load keeps the client's id (the handler's session calls
// fail; nothing is replaced or adopted), and a failed write turns the
// response into an error without a new cookie or a second attempt.
func TestMiddleware_StorageOutage(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	base := startMiddlewareApp(t, storage)
	invented := "attackerChoseThisId0000000000001"
	_, id := call(t, http.MethodPost, base+"/login?user=ann", "")
	require.NotEmpty(t, id)

	t.Run("load fails", func(t *testing.T) {
		for _, sid := range []string{id, invented} {
			storage.calls()
			storage.failLoad.Store(true)
			res := mustSend(t, http.MethodPost, base+"/counter", sid)
			require.False(t, storage.failLoad.Load(), "the load failed once")
			assert.NotEqual(t, http.StatusOK, res.status, "the session could not be loaded: %s", res.raw)
			assert.Nil(t, res.cookie, "the client keeps its id")
			_, writes, _, _ := storage.calls()
			assert.Zero(t, writes, "nothing is written")
		}
		assertNotStored(t, storage, invented)
		body, setId := call(t, http.MethodGet, base+"/me", id)
		assert.Equal(t, "ann", body["user"], "the outage logged nobody out")
		assert.EqualValues(t, 0, body["counter"])
		assert.Empty(t, setId)
	})

	t.Run("write fails", func(t *testing.T) {
		for _, tt := range []struct {
			sid    string
			err    error
			status int
		}{
			{id, nil, http.StatusServiceUnavailable},
			{invented, nil, http.StatusServiceUnavailable},
			{"", nil, http.StatusServiceUnavailable},
			{id, gerror.NewCode(gcode.CodeInvalidParameter, "value cannot be stored"), http.StatusInternalServerError},
		} {
			storage.writeErr = tt.err
			storage.failWrite.Store(true)
			storage.calls()
			res := mustSend(t, http.MethodPost, base+"/counter", tt.sid)
			require.False(t, storage.failWrite.Load(), "the write failed once")
			assert.Equal(t, tt.status, res.status, "cookie %q: %s", tt.sid, res.raw)
			assert.NotContains(t, res.raw, "ok", "the handler's response is replaced")
			assert.Nil(t, res.cookie, "cookie %q: no new session cookie for a session that was not stored", tt.sid)
			_, writes, _, _ := storage.calls()
			assert.EqualValues(t, 1, writes, "cookie %q: one attempt, not tried again after the response", tt.sid)
		}
		storage.writeErr = nil
		assertNotStored(t, storage, invented)
		body, setId := call(t, http.MethodGet, base+"/me", id)
		assert.Equal(t, "ann", body["user"])
		assert.EqualValues(t, 0, body["counter"], "no failed increment was stored")
		assert.Empty(t, setId)
	})
}

// TestMiddleware_AcknowledgedMeansStored kills Redis between a handler's
// change and the end of the request: the response is an error, not 200;
// with Redis up, a 200 means the value is stored, written once.
func TestMiddleware_AcknowledgedMeansStored(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Persistence: true})
	const timeout = 300 * time.Millisecond
	client := newGredis(t, &gredis.Config{Address: srv.Addr, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, WaitTimeout: timeout})
	storage := &faultyStorage{Storage: newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{})}
	held, release := make(chan struct{}), make(chan struct{})
	base := startApp(t, storage, appOptions{routes: func(group *ghttp.RouterGroup) {
		group.POST("/counter-held", func(r *ghttp.Request) {
			r.Session.MustSet("counter", r.Session.MustGet("counter").Int()+1)
			held <- struct{}{}
			<-release
			r.Response.WriteJson(g.Map{"ok": true})
		})
	}})
	_, id := call(t, http.MethodPost, base+"/login?user=ann", "")
	require.NotEmpty(t, id)

	type result struct {
		res reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := send(http.MethodPost, base+"/counter-held", id)
		done <- result{res, err}
	}()
	<-held
	storage.calls()
	srv.Kill(t)
	close(release)
	got := <-done
	require.NoError(t, got.err)
	assert.Equal(t, http.StatusServiceUnavailable, got.res.status, "the session was not stored: %s", got.res.raw)
	assert.Nil(t, got.res.cookie)
	_, writes, _, _ := storage.calls()
	assert.EqualValues(t, 1, writes, "one write attempt")

	srv.Restart(t)
	var body map[string]any
	require.Eventually(t, func() bool {
		res, err := send(http.MethodGet, base+"/me", id)
		body = res.body
		return err == nil && res.status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "Redis is back")
	assert.Equal(t, "ann", body["user"], "still logged in")
	assert.EqualValues(t, 0, body["counter"], "the failed increment is not there")

	storage.calls()
	_, setId := call(t, http.MethodPost, base+"/counter", id)
	assert.Empty(t, setId)
	_, writes, _, _ = storage.calls()
	assert.EqualValues(t, 1, writes, "one write per request, not one more after the response")
	assert.EqualValues(t, 1, storedValue(t, storage, id, "counter"), "a 200 means stored")
}

// TestMiddleware_SetIdOnKnownSession checks that a session the handler moved
// to an id of its choosing (SetId), on a request that carried a live id, is
// stored before the response: a failed write is an error, not a 200 with a
// cookie naming a session that was never stored.
func TestMiddleware_SetIdOnKnownSession(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	base := startApp(t, storage, appOptions{routes: func(group *ghttp.RouterGroup) {
		group.POST("/set-id", func(r *ghttp.Request) {
			if err := r.Session.SetId(r.Get("id").String()); err != nil {
				r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
				return
			}
			r.Session.MustSet("custom", true)
			r.Response.WriteJson(g.Map{"ok": true})
		})
	}})
	_, known := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, known)

	custom := "customId" + gfsession.NewSessionId()[:16]
	storage.failWrite.Store(true)
	storage.calls()
	res := mustSend(t, http.MethodPost, base+"/set-id?id="+custom, known)
	require.False(t, storage.failWrite.Load(), "the write was tried")
	assert.Equal(t, http.StatusServiceUnavailable, res.status, res.raw)
	assert.Nil(t, res.cookie, "no cookie for a session that was not stored")
	assertNotStored(t, storage, custom)
	_, writes, touches, _ := storage.calls()
	assert.EqualValues(t, 1, writes, "one attempt, not tried again after the response")
	assert.EqualValues(t, 1, touches, "the loaded session, unused, has its TTL refreshed")

	custom = "customId" + gfsession.NewSessionId()[:16]
	_, setId := call(t, http.MethodPost, base+"/set-id?id="+custom, known)
	assert.Equal(t, custom, setId)
	assert.Equal(t, true, storedValue(t, storage, custom, "custom"), "a 200 means stored")
	assert.EqualValues(t, 1, storedValue(t, storage, known, "counter"), "the client's session is untouched")
}

// TestMiddleware_EarlierReader checks a session that a middleware registered
// before this one read first (so it was started with the client's id): an id
// the storage does not hold is still replaced, never stored; when the
// storage cannot say, the request fails rather than adopt the id.
func TestMiddleware_EarlierReader(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	var failCheck atomic.Bool
	s := g.Server(fmt.Sprintf("mw-early-%d", time.Now().UnixNano()))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetSessionStorage(storage)
	s.Use(func(r *ghttp.Request) { // an auth or logging middleware
		_, _ = r.Session.Get("user")
		if failCheck.Load() {
			storage.failLoad.Store(true)
		}
		r.Middleware.Next()
	}, gfsession.Middleware)
	s.BindHandler("POST:/counter", func(r *ghttp.Request) {
		r.Session.MustSet("counter", r.Session.MustGet("counter").Int()+1)
		r.Response.WriteJson(g.Map{"counter": r.Session.MustGet("counter").Int()})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	base := fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())

	invented := "attackerChoseThisId0000000000009"
	body, setId := call(t, http.MethodPost, base+"/counter", invented)
	require.NotEmpty(t, setId)
	assert.NotEqual(t, invented, setId)
	assert.EqualValues(t, 1, body["counter"])
	assertNotStored(t, storage, invented)

	body, again := call(t, http.MethodPost, base+"/counter", setId)
	assert.Empty(t, again, "a known id is kept")
	assert.EqualValues(t, 2, body["counter"])

	failCheck.Store(true)
	res := mustSend(t, http.MethodPost, base+"/counter", invented)
	failCheck.Store(false)
	assert.Equal(t, http.StatusInternalServerError, res.status, "the id could not be checked: %s", res.raw)
	assert.Nil(t, res.cookie)
	assertNotStored(t, storage, invented)
}

// sizeFails is a storage whose GetSize fails when armed.
type sizeFails struct {
	gsession.Storage
	fail atomic.Bool
}

func (s *sizeFails) GetSize(ctx context.Context, id string) (int, error) {
	if s.fail.CompareAndSwap(true, false) {
		return 0, errors.New("backend unreachable")
	}
	return s.Storage.GetSize(ctx, id)
}

// TestMiddleware_SizeCheckFails checks a storage whose GetSession answers an
// empty map for a live session (gf's StorageRedisHashTable): when the size
// check that follows fails, the load failed; the client's id is kept, not
// dropped as unknown.
func TestMiddleware_SizeCheckFails(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	storage := &sizeFails{Storage: gsession.NewStorageRedisHashTable(client, "mwhash:")}
	base := startMiddlewareApp(t, storage)
	_, id := call(t, http.MethodPost, base+"/login?user=ann", "")
	require.NotEmpty(t, id)
	body, _ := call(t, http.MethodGet, base+"/me", id)
	require.Equal(t, "ann", body["user"])

	storage.fail.Store(true)
	res := mustSend(t, http.MethodPost, base+"/counter", id)
	require.False(t, storage.fail.Load(), "the size check failed once")
	assert.NotEqual(t, http.StatusOK, res.status, "the session could not be loaded: %s", res.raw)
	assert.Nil(t, res.cookie, "an outage must not replace the user's session")
	body, setId := call(t, http.MethodGet, base+"/me", id)
	assert.Equal(t, "ann", body["user"])
	assert.Empty(t, setId)
}

// failingWrites fails the n-th SetSession and every RemoveAll while armed.
type failingWrites struct {
	gsession.Storage
	n, count   atomic.Int64
	failRemove atomic.Bool
}

func (f *failingWrites) SetSession(ctx context.Context, id string, data *gmap.StrAnyMap, ttl time.Duration) error {
	if f.count.Add(1) == f.n.Load() {
		return errors.New("backend unreachable")
	}
	return f.Storage.SetSession(ctx, id, data, ttl)
}

func (f *failingWrites) RemoveAll(ctx context.Context, id string) error {
	if f.failRemove.Load() {
		return errors.New("backend unreachable")
	}
	return f.Storage.RemoveAll(ctx, id)
}

// TestMiddleware_RegenerateThenStoreFails checks that a login whose session
// cannot be stored leaves the client's old session alone (Regenerate
// deletes the old id only once the new one is stored), and that a login
// whose old id cannot be deleted is not acknowledged.
func TestMiddleware_RegenerateThenStoreFails(t *testing.T) {
	storage := &failingWrites{Storage: newMemory(t)}
	base := startMiddlewareApp(t, storage)
	_, anon := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, anon)

	storage.count.Store(0)
	storage.n.Store(2) // Regenerate's copy is stored, the final write fails
	res := mustSend(t, http.MethodPost, base+"/login?user=ann", anon)
	storage.n.Store(0)
	require.Equal(t, http.StatusServiceUnavailable, res.status, res.raw)
	require.Nil(t, res.cookie)
	body, setId := call(t, http.MethodGet, base+"/me", anon)
	assert.EqualValues(t, 1, body["counter"], "the client keeps its session")
	assert.Empty(t, body["user"])
	assert.Empty(t, setId)

	storage.failRemove.Store(true)
	res = mustSend(t, http.MethodPost, base+"/login?user=ann", anon)
	storage.failRemove.Store(false)
	assert.Equal(t, http.StatusServiceUnavailable, res.status, "the old id is still valid: %s", res.raw)
	assert.Nil(t, res.cookie)

	_, loggedIn := call(t, http.MethodPost, base+"/login?user=ann", anon)
	require.NotEmpty(t, loggedIn)
	assert.Nil(t, storedValue(t, storage, anon, "counter"), "the old id is deleted")
	body, _ = call(t, http.MethodGet, base+"/me", loggedIn)
	assert.Equal(t, "ann", body["user"])
	assert.EqualValues(t, 1, body["counter"])
}

// perKeyStorage keeps the data behind Get/Set, in the style of
// gsession.StorageBase: GetSession, SetSession and UpdateTTL are disabled.
type perKeyStorage struct {
	gsession.StorageBase
	mu    sync.Mutex
	m     map[string]map[string]any
	sizes atomic.Int64
}

func (p *perKeyStorage) Get(ctx context.Context, id, key string) (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id][key], nil
}

func (p *perKeyStorage) GetSize(ctx context.Context, id string) (int, error) {
	p.sizes.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m[id]), nil
}

func (p *perKeyStorage) Set(ctx context.Context, id, key string, v any, ttl time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[id] == nil {
		p.m[id] = map[string]any{}
	}
	p.m[id][key] = v
	return nil
}

func (p *perKeyStorage) RemoveAll(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
	return nil
}

// TestMiddleware_PerKeyStorage checks a storage that keeps the data behind
// Get/Set and disables GetSession: its sessions are recognized by their
// size, with one call per request, and unknown ids are still dropped.
func TestMiddleware_PerKeyStorage(t *testing.T) {
	storage := &perKeyStorage{m: map[string]map[string]any{}}
	base := startMiddlewareApp(t, storage)
	_, id := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, id)
	_, again := call(t, http.MethodPost, base+"/counter", id)
	assert.Empty(t, again, "the known id is kept")
	storage.sizes.Store(0)
	body, again := call(t, http.MethodGet, base+"/me", id)
	assert.EqualValues(t, 2, body["counter"])
	assert.Empty(t, again)
	assert.EqualValues(t, 1, storage.sizes.Load(), "one look-up")

	invented := "attackerChoseThisId0000000000007"
	_, setId := call(t, http.MethodPost, base+"/counter", invented)
	assert.NotEqual(t, invented, setId)
	assert.Zero(t, len(storage.m[invented]), "nothing stored under the invented id")
}

// TestMiddleware_ErrorResponseHeaders checks that the error that replaces a
// response whose session could not be stored carries none of the handler's
// redirect, content headers, caching or cookies.
func TestMiddleware_ErrorResponseHeaders(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	base := startApp(t, storage, appOptions{routes: func(group *ghttp.RouterGroup) {
		group.POST("/login-redirect", func(r *ghttp.Request) {
			r.Session.MustSet("user", "ann")
			r.Cookie.Set("remember", "token-for-ann")
			r.Response.Header().Set("Cache-Control", "public, max-age=3600")
			r.Response.Header().Set("Content-Disposition", "inline")
			r.Response.RedirectTo("/home")
		})
	}})
	storage.failWrite.Store(true)
	req, err := http.NewRequest(http.MethodPost, base+"/login-redirect", nil)
	require.NoError(t, err)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Location"))
	assert.Empty(t, resp.Header.Get("Content-Disposition"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Empty(t, resp.Cookies(), "no cookie of the failed request is sent")
}

// TestMiddleware_InvalidIdFromIdFunc checks that a session stored under an
// id the next request would drop (a SetIdFunc outside IsValidSessionId's
// alphabet, which gf's own storages accept) is reported.
func TestMiddleware_InvalidIdFromIdFunc(t *testing.T) {
	base := startApp(t, gsession.NewStorageMemory(), appOptions{routes: func(group *ghttp.RouterGroup) {
		group.POST("/id-func", func(r *ghttp.Request) {
			_ = r.Session.SetIdFunc(func(time.Duration) string { return r.Get("prefix").String() + gfsession.NewSessionId() })
			r.Session.MustSet("counter", 1)
			r.Response.WriteJson(g.Map{"ok": true})
		})
	}})
	logs := captureLog(t)
	_, id := call(t, http.MethodPost, base+"/id-func?prefix=app-", "")
	require.True(t, gfsession.IsValidSessionId(id), id)
	assert.NotContains(t, logs(), "IsValidSessionId refuses")

	_, id = call(t, http.MethodPost, base+"/id-func?prefix=app.", "")
	require.False(t, gfsession.IsValidSessionId(id), id)
	assert.Contains(t, logs(), "IsValidSessionId refuses")
	assert.NotContains(t, logs(), id, "the whole id is never logged")
}

// TestMiddleware_HookAfterFailedStore checks that after a session could not
// be stored, a hook that writes the session (a last-seen time) neither
// stores a session nor sends a cookie: the client keeps its session.
func TestMiddleware_HookAfterFailedStore(t *testing.T) {
	storage := &faultyStorage{Storage: newMemory(t)}
	var hookErr atomic.Value
	s := g.Server(fmt.Sprintf("mw-hook-%d", time.Now().UnixNano()))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetSessionStorage(storage)
	s.Use(gfsession.Middleware)
	s.BindHookHandler("/*", ghttp.HookBeforeOutput, func(r *ghttp.Request) {
		if err := r.Session.Set("lastSeen", time.Now().Unix()); err != nil {
			hookErr.Store(err.Error())
		}
	})
	s.BindHandler("POST:/counter", func(r *ghttp.Request) {
		r.Session.MustSet("counter", r.Session.MustGet("counter").Int()+1)
		r.Response.WriteJson(g.Map{"ok": true})
	})
	s.BindHandler("GET:/me", func(r *ghttp.Request) {
		r.Response.WriteJson(g.Map{"counter": r.Session.MustGet("counter").Int()})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	base := fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())
	_, id := call(t, http.MethodPost, base+"/counter", "")
	require.NotEmpty(t, id)

	storage.failWrite.Store(true)
	storage.calls()
	res := mustSend(t, http.MethodPost, base+"/counter", id)
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Nil(t, res.cookie, "the client keeps its session")
	assert.Contains(t, hookErr.Load(), "could not be stored", "the hook is told")
	_, writes, _, _ := storage.calls()
	assert.EqualValues(t, 1, writes, "nothing written after the failed write")
	body, setId := call(t, http.MethodGet, base+"/me", id)
	assert.EqualValues(t, 1, body["counter"])
	assert.Empty(t, setId)
}
