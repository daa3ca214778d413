package gfsession_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// TestAdmin_DestroyHandleOfRangedGfSession: an admin who walks Range and
// destroys every handle it visits ("log everybody out") must leave no
// session behind. Range visits a session of gf's own storage, not yet read
// since the switch, by Handle(id); DestroyHandle of that handle must delete
// it, or the cookie keeps working (and is moved to the handle on its next
// use).
func TestAdmin_DestroyHandleOfRangedGfSession(t *testing.T) {
	for name, newBackend := range gfPairs(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			ctx := context.Background()
			a := b.storage.(gfsession.Admin)
			id := gfsession.NewSessionId()
			gfWrite(t, b.gf, id, map[string]any{"uid": "dave"})

			var handles []string
			require.NoError(t, a.Range(ctx, func(h string) bool { handles = append(handles, h); return true }))
			require.Equal(t, []string{gfsession.Handle(id)}, handles, "Range visits the gf session by its handle")
			for _, h := range handles {
				require.NoError(t, a.DestroyHandle(ctx, h))
			}
			n, err := a.Count(ctx)
			require.NoError(t, err)
			assert.Zero(t, n, "a session survives DestroyHandle of the handle Range gave")
			data, err := b.storage.GetSession(ctx, id, time.Hour)
			require.NoError(t, err)
			assert.Nil(t, data, "the cookie of a session destroyed by its handle still works")
		})
	}
}

// TestAdmin_LimitReloginAfterOwnRemoveAll: maxSessionsPerUser 1. A request
// of alice's laptop clears its session (RemoveAll) while her phone logs in,
// then stores alice again (a login: a new session under the id). The
// phone's login saw only itself; the laptop's login must apply the limit:
// one session left.
func TestAdmin_LimitReloginAfterOwnRemoveAll(t *testing.T) {
	for name, newStorages := range limitedStorages(t, 1) {
		t.Run(name, func(t *testing.T) {
			storages := newStorages(t)
			st := storages[0]
			m := gsession.New(time.Hour, st)
			laptop, phone := gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, m, laptop, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })

			r := hashRequest(m, laptop)
			require.Equal(t, "alice", r.MustGet("uid").String())
			require.NoError(t, r.RemoveAll())

			p := m.New(redisReqCtx(), phone)
			require.NoError(t, p.Set("uid", "alice"))
			require.NoError(t, p.Close())

			require.NoError(t, r.Set("uid", "alice"))
			require.NoError(t, r.Close())

			assert.Len(t, liveOf(t, st, "alice", []string{laptop, phone}), 1, "maxSessionsPerUser 1 left more sessions")
		})
	}
}

// TestAdmin_DBUserIdTrailingSpace: the user index compares user ids as
// strings. On MySQL/MariaDB the user_id column's utf8mb4_bin collation pads
// with spaces, so "alice" and "alice " are one user to SQL: alice's devices
// list, her CountUsers and the limit of "alice " must not reach each
// other's sessions.
func TestAdmin_DBUserIdTrailingSpace(t *testing.T) {
	for _, dialect := range []string{"mysql", "pgsql"} {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			st := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", CleanupInterval: -1})
			limited := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxSessionsPerUser: 1, CleanupInterval: -1})
			ctx := context.Background()
			alice, other := gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, gsession.New(time.Hour, st), alice, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })

			list, err := st.Sessions(ctx, "alice ")
			require.NoError(t, err)
			assert.Empty(t, list, `Sessions("alice ") lists alice's session (with her client info)`)

			// "alice " logs in through the limited storage: alice stays.
			redisReq(t, gsession.New(time.Hour, limited), other, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice ")) })
			assert.Equal(t, []string{alice}, liveOf(t, st, "alice", []string{alice}), `the login of "alice " signed alice out`)

			n, err := st.CountUsers(ctx)
			require.NoError(t, err)
			assert.Equal(t, 2, n, "CountUsers")
		})
	}
}

// TestAdmin_LimitKeepsNewestLoginUnderMaxLifetime: maxSessionsPerUser 1
// with maxLifetime. Alice logs in on her laptop, then on a device whose
// (anonymous) session is older: the newest login is the most recently
// active session and must be the one kept. LastActive derived from the
// expiry capped by maxLifetime ranks it below the laptop, and the login
// signs itself out.
func TestAdmin_LimitKeepsNewestLoginUnderMaxLifetime(t *testing.T) {
	const maxLifetime = 4 * time.Second
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	storages := map[string]func(t *testing.T) gsession.Storage{
		"memory": func(t *testing.T) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{UserKey: "uid", MaxSessionsPerUser: 1, MaxLifetime: maxLifetime})
		},
		"file": func(t *testing.T) gsession.Storage {
			return newFile(t, gfsession.FileConfig{Path: t.TempDir(), UserKey: "uid", MaxSessionsPerUser: 1, MaxLifetime: maxLifetime})
		},
		"db": func(t *testing.T) gsession.Storage {
			db := openTestDB(t, dbTestLink(t, "pgsql"))
			return newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), UserKey: "uid", MaxSessionsPerUser: 1, MaxLifetime: maxLifetime, CleanupInterval: -1})
		},
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		storages[kind] = func(t *testing.T) gsession.Storage {
			return newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "uid", MaxSessionsPerUser: 1, MaxLifetime: maxLifetime})
		}
	}
	for name, newStorage := range storages {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := newStorage(t)
			m := gsession.New(time.Hour, st)
			tablet, laptop := gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, m, tablet, func(s *gsession.Session) { require.NoError(t, s.Set("cart", 1)) })
			time.Sleep(1500 * time.Millisecond)
			redisReq(t, m, laptop, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			time.Sleep(500 * time.Millisecond)
			// The newest login, on the tablet.
			s := m.New(redisReqCtx(), tablet)
			require.NoError(t, s.Set("uid", "alice"))
			require.NoError(t, s.Close())
			assert.Equal(t, []string{tablet}, liveOf(t, st, "alice", []string{tablet, laptop}),
				"the login just made must be kept, the least recently active session destroyed")
		})
	}
}

// TestAdmin_DestroyHandleOwnSessionThenWrite: a "sign out this device"
// handler destroys the request's own session by its handle (the devices
// page lists it like any other), then sets a flash message. The user must
// be signed out: the request's write must not store its map, which still
// names the user, as a new session.
func TestAdmin_DestroyHandleOwnSessionThenWrite(t *testing.T) {
	for name, newStorage := range everyStorage(t, "user", 0) {
		t.Run(name, func(t *testing.T) {
			base := startApp(t, newStorage(t), appOptions{routes: func(group *ghttp.RouterGroup) {
				group.POST("/signout-device", func(r *ghttp.Request) {
					a, err := gfsession.AdminOf(r)
					if err == nil {
						_ = r.Session.MustGet("user")
						var id string
						if id, err = r.Session.Id(); err == nil {
							err = a.DestroyHandle(r.Context(), gfsession.Handle(id))
						}
					}
					if err != nil {
						r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
						return
					}
					r.Session.MustSet("flash", "signed out")
					r.Response.WriteJson(g.Map{"ok": true})
				})
			}})
			_, sid := call(t, http.MethodPost, base+"/login?user=alice", "")
			require.NotEmpty(t, sid)
			body, _ := call(t, http.MethodGet, base+"/me", sid)
			require.Equal(t, "alice", body["user"])
			call(t, http.MethodPost, base+"/signout-device", sid)
			body, _ = call(t, http.MethodGet, base+"/me", sid)
			assert.Equal(t, "", body["user"], "the session destroyed by its handle came back with the user")
		})
	}
}

// TestAdmin_ClientInfoHostileHeaders: with
// clientInfo, sealed or not, a client that sends a huge User-Agent with
// multi-byte characters and a long forged X-Forwarded-For neither breaks its
// session nor bloats it: the devices list shows the IP cut to 64 bytes and
// valid UTF-8; and a request that removes the session's last key deletes
// the session, the client info left over included (redis-hash's reserved
// "\x00client" field does not keep the hash alive).
func TestAdmin_ClientInfoHostileHeaders(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		for name, newStorage := range clientInfoStorages(t, sealed) {
			t.Run(fmt.Sprintf("%s/sealed=%v", name, sealed), func(t *testing.T) {
				st := newStorage(t)
				base := startApp(t, st, appOptions{routes: func(group *ghttp.RouterGroup) {
					devicesRoute(group)
					group.POST("/cart", func(r *ghttp.Request) {
						r.Session.MustSet("cart", 1)
						r.Response.WriteJson(g.Map{"ok": true})
					})
					group.POST("/uncart", func(r *ghttp.Request) {
						r.Session.MustRemove("cart")
						r.Response.WriteJson(g.Map{"ok": true})
					})
				}})
				agent := strings.Repeat("é", 3000) + "Z"
				forged := "a" + strings.Repeat("ü", 100) // cut to 64 bytes mid-rune
				send := func(method, path, sid string) (map[string]any, string) {
					return sendWithHeaders(t, method, base+path, sid,
						map[string]string{"User-Agent": agent, "X-Forwarded-For": forged, "X-Real-IP": forged})
				}
				_, sid := send(http.MethodPost, "/login?user=alice", "")
				require.NotEmpty(t, sid)
				body, _ := send(http.MethodGet, "/me", sid)
				require.Equal(t, "alice", body["user"], "the session of a hostile client does not load")
				body, _ = send(http.MethodGet, "/devices", sid)
				devices, _ := body["devices"].([]any)
				require.Len(t, devices, 1)
				info := devices[0].(map[string]any)
				ip, ua := fmt.Sprint(info["clientIp"]), fmt.Sprint(info["userAgent"])
				assert.LessOrEqual(t, len(ip), 64)
				assert.True(t, strings.HasPrefix(ip, "aü"), "the forged IP is what is shown: %q", ip)
				assert.LessOrEqual(t, len(ip)+1+len(ua), 512)
				assert.True(t, utf8.ValidString(ip) && utf8.ValidString(ua))

				// An anonymous session whose only key is removed is deleted.
				_, anon := send(http.MethodPost, "/cart", "")
				require.NotEmpty(t, anon)
				send(http.MethodPost, "/uncart", anon)
				n, err := st.(gfsession.Admin).Count(context.Background())
				require.NoError(t, err)
				assert.Equal(t, 1, n, "the emptied session is still stored (only alice's may be)")
			})
		}
	}
}
