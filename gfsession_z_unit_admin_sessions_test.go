package gfsession_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

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

// handlesOf returns the handles of `list`, sorted.
func handlesOf(list []gfsession.SessionInfo) []string {
	hs := make([]string, 0, len(list))
	for _, info := range list {
		hs = append(hs, info.Handle)
	}
	sort.Strings(hs)
	return hs
}

// handlesOfIds returns the handles of session ids `ids`, sorted.
func handlesOfIds(ids ...string) []string {
	hs := make([]string, 0, len(ids))
	for _, id := range ids {
		hs = append(hs, gfsession.Handle(id))
	}
	sort.Strings(hs)
	return hs
}

// TestAdmin_Sessions lists a user's sessions on every storage: the user's
// live sessions only (not another user's, not an anonymous one, not one
// that switched user or logged out), with handles, creation and last
// activity, the most recently active first; DestroyUserExcept then spares
// the one kept.
func TestAdmin_Sessions(t *testing.T) {
	for name, newStorage := range everyStorage(t, "uid", 0) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := newStorage(t)
			a := st.(gfsession.Admin)
			m := gsession.New(time.Hour, st)
			before := time.Now().Add(-time.Second)
			var alice []string
			for i := 0; i < 3; i++ {
				id := gfsession.NewSessionId()
				redisReq(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "n": i})) })
				alice = append(alice, id)
			}
			bob, anon, switched, loggedOut := gfsession.NewSessionId(), gfsession.NewSessionId(), gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, m, bob, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "bob")) })
			redisReq(t, m, anon, func(s *gsession.Session) { require.NoError(t, s.Set("cart", 1)) })
			redisReq(t, m, switched, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			redisReq(t, m, switched, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "carol")) })
			redisReq(t, m, loggedOut, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			redisReq(t, m, loggedOut, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })

			list, err := a.Sessions(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, handlesOfIds(alice...), handlesOf(list), "alice's live sessions, by handle")
			after := time.Now().Add(time.Second)
			for i, info := range list {
				assert.False(t, info.Current, "no request in the context: no current session")
				assert.True(t, info.Created.After(before) && info.Created.Before(after), "Created %v", info.Created)
				assert.True(t, info.LastActive.After(before) && info.LastActive.Before(after), "LastActive %v", info.LastActive)
				if i > 0 {
					assert.False(t, info.LastActive.After(list[i-1].LastActive), "the most recently active first")
				}
			}
			list, err = a.Sessions(ctx, "nobody")
			require.NoError(t, err)
			assert.Empty(t, list)

			// Online users count live sessions only: the switched session is
			// carol's, the logged-out one nobody's.
			users := map[string]int{}
			require.NoError(t, a.Users(ctx, func(u string, n int) bool { users[u] += n; return true }))
			assert.Equal(t, map[string]int{"alice": 3, "bob": 1, "carol": 1}, users)
			n, err := a.CountUsers(ctx)
			require.NoError(t, err)
			assert.Equal(t, 3, n)

			n, err = a.DestroyUserExcept(ctx, "alice", gfsession.Handle(alice[1]))
			require.NoError(t, err)
			assert.Equal(t, 2, n)
			list, err = a.Sessions(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, handlesOfIds(alice[1]), handlesOf(list), "only the session kept is left")
			list, err = a.Sessions(ctx, "bob")
			require.NoError(t, err)
			assert.Equal(t, handlesOfIds(bob), handlesOf(list), "another user's session stays")
		})
	}
}

// TestAdmin_SessionsNeedUserKey: without a userKey, Sessions fails instead of
// listing nothing, as DestroyUser does.
func TestAdmin_SessionsNeedUserKey(t *testing.T) {
	for name, newStorage := range everyStorage(t, "", 0) {
		t.Run(name, func(t *testing.T) {
			a := newStorage(t).(gfsession.Admin)
			_, err := a.Sessions(context.Background(), "alice")
			require.Error(t, err)
			assert.Equal(t, gcode.CodeInvalidOperation, gerror.Code(err))
			_, err = a.DestroyUserExcept(context.Background(), "alice", gfsession.Handle("x"))
			require.Error(t, err)
		})
	}
}

// TestAdmin_SignOutOthersOverHTTP drives a ghttp server with Middleware on
// every storage from two devices of one user, each with its own cookie jar:
// device A lists its devices (two, its own marked current), signs the other
// out, and device B's next request is anonymous while A stays signed in.
func TestAdmin_SignOutOthersOverHTTP(t *testing.T) {
	for name, newStorage := range everyStorage(t, "user", 0) {
		t.Run(name, func(t *testing.T) {
			base := startApp(t, newStorage(t), appOptions{routes: func(group *ghttp.RouterGroup) {
				devicesRoute(group)
				group.POST("/signout-others", func(r *ghttp.Request) {
					n, err := gfsession.SignOutOthers(r)
					if err != nil {
						r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
						return
					}
					r.Response.WriteJson(g.Map{"signedOut": n})
				})
			}})
			login := func() string {
				_, sid := call(t, http.MethodPost, base+"/login?user=alice", "")
				require.NotEmpty(t, sid)
				return sid
			}
			deviceA, deviceB := login(), login()
			require.NotEqual(t, deviceA, deviceB)

			body, _ := call(t, http.MethodGet, base+"/devices", deviceA)
			devices, _ := body["devices"].([]any)
			require.Len(t, devices, 2, "%v", body)
			current := 0
			for _, d := range devices {
				info := d.(map[string]any)
				if info["current"] == true {
					current++
					assert.Equal(t, gfsession.Handle(deviceA), info["handle"], "the current device is the one asking")
				}
				assert.NotEqual(t, deviceA, info["handle"], "a session id is on the page")
				assert.NotEqual(t, deviceB, info["handle"], "a session id is on the page")
			}
			assert.Equal(t, 1, current, "exactly one device is the current one")

			body, _ = call(t, http.MethodPost, base+"/signout-others", deviceA)
			assert.EqualValues(t, 1, body["signedOut"])
			body, _ = call(t, http.MethodGet, base+"/me", deviceB)
			assert.Empty(t, body["user"], "device B is still signed in")
			body, _ = call(t, http.MethodGet, base+"/me", deviceA)
			assert.Equal(t, "alice", body["user"], "device A was signed out too")
			body, _ = call(t, http.MethodGet, base+"/devices", deviceA)
			devices, _ = body["devices"].([]any)
			assert.Len(t, devices, 1)
		})
	}
}

// clientInfoStorages returns a constructor of each storage with userKey
// "user" and clientInfo on, sealed (`sealed`) or not.
func clientInfoStorages(t *testing.T, sealed bool) map[string]func(t *testing.T) gsession.Storage {
	var keys [][]byte
	if sealed {
		keys = [][]byte{bytes.Repeat([]byte{7}, 32)}
	}
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	storages := map[string]func(t *testing.T) gsession.Storage{
		"file": func(t *testing.T) gsession.Storage {
			return newFile(t, gfsession.FileConfig{Path: t.TempDir(), UserKey: "user", ClientInfo: true, CryptoKeys: keys})
		},
		"db": func(t *testing.T) gsession.Storage {
			db := openTestDB(t, dbTestLink(t, "pgsql"))
			return newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), UserKey: "user", ClientInfo: true, CryptoKeys: keys})
		},
	}
	if !sealed {
		storages["memory"] = func(t *testing.T) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{UserKey: "user", ClientInfo: true})
		}
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		storages[kind] = func(t *testing.T) gsession.Storage {
			return newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "user", ClientInfo: true, CryptoKeys: keys})
		}
	}
	return storages
}

// TestAdmin_ClientInfo: with clientInfo, the devices list tells each
// session's client IP and User-Agent, those of the request that last wrote
// it, on every storage, sealed or not.
func TestAdmin_ClientInfo(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		for name, newStorage := range clientInfoStorages(t, sealed) {
			t.Run(fmt.Sprintf("%s/sealed=%v", name, sealed), func(t *testing.T) {
				base := startApp(t, newStorage(t), appOptions{routes: func(group *ghttp.RouterGroup) {
					devicesRoute(group)
				}})
				send := func(method, path, sid, agent string) (map[string]any, string) {
					return sendWithHeaders(t, method, base+path, sid, map[string]string{"User-Agent": agent})
				}
				_, phone := send(http.MethodPost, "/login?user=alice", "", "TestPhone/1.0")
				_, laptop := send(http.MethodPost, "/login?user=alice", "", "TestLaptop/2.0")
				body, _ := send(http.MethodGet, "/devices", laptop, "TestLaptop/2.0")
				agents := map[string]string{}
				for _, d := range body["devices"].([]any) {
					info := d.(map[string]any)
					agents[info["handle"].(string)] = fmt.Sprint(info["userAgent"])
					assert.Equal(t, "127.0.0.1", info["clientIp"])
				}
				assert.Equal(t, map[string]string{
					gfsession.Handle(phone):  "TestPhone/1.0",
					gfsession.Handle(laptop): "TestLaptop/2.0",
				}, agents)
				// The phone writes from another browser: the last writer's.
				send(http.MethodPost, "/counter", phone, "TestPhone/1.1")
				body, _ = send(http.MethodGet, "/devices", laptop, "TestLaptop/2.0")
				for _, d := range body["devices"].([]any) {
					if info := d.(map[string]any); info["handle"] == gfsession.Handle(phone) {
						assert.Equal(t, "TestPhone/1.1", info["userAgent"])
					}
				}
			})
		}
	}
}

// devicesRoute adds GET /devices, the user's sessions as JSON
// (gfsession.UserSessions), to `group`.
func devicesRoute(group *ghttp.RouterGroup) {
	group.GET("/devices", func(r *ghttp.Request) {
		list, err := gfsession.UserSessions(r)
		if err != nil {
			r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
			return
		}
		r.Response.WriteJson(g.Map{"devices": list})
	})
}

// sendWithHeaders sends one request to `url` with the session id `sid` (if
// any) and the headers `headers`, and returns its JSON body and the session
// id it leaves the client with.
func sendWithHeaders(t *testing.T, method, url, sid string, headers map[string]string) (map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if sid != "" {
		req.Header.Set("Cookie", sessionCookie+"="+sid)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var body map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			sid = c.Value
		}
	}
	return body, sid
}
