package gfsession_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// TestAttack_DBLimitUnstampedSessionOutranksLogin: db with maxLifetime
// shorter than the TTL (every session in its capped phase) and
// maxSessionsPerUser 1. Alice's session was written without the write-time
// stamp (before the limit was turned on, or by an instance of the same
// table without the limit). Her new login must be kept and the old
// session destroyed; activity() orders an unstamped capped session by its
// expiry, which is in the future, so it outranks every stamped login and
// each new login destroys itself.
func TestAttack_DBLimitUnstampedSessionOutranksLogin(t *testing.T) {
	const life = 30 * time.Minute
	for _, dialect := range dbDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			plain := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxLifetime: life, CleanupInterval: -1})
			limited := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxLifetime: life, MaxSessionsPerUser: 1, CleanupInterval: -1})
			old, login := gfsession.NewSessionId(), gfsession.NewSessionId()
			redisReq(t, gsession.New(time.Hour, plain), old, func(s *gsession.Session) { require.NoError(t, s.Set("uid", "alice")) })
			waitClock(t, 20*time.Millisecond)
			s := gsession.New(time.Hour, limited).New(redisReqCtx(), login)
			require.NoError(t, s.Set("uid", "alice"))
			require.NoError(t, s.Close())
			assert.Equal(t, []string{login}, liveOf(t, limited, "alice", []string{old, login}),
				"the login just made destroyed itself: the older unstamped session outranks it")
		})
	}
}

// TestAttack_LimitRegenerateIdLogsOut: maxSessionsPerUser 1. A signed-in
// user's request rotates its id (RegenerateId(true), e.g. after a
// privilege change). The write under the new id counts as a login; when
// the old session, just loaded (its TTL restarted), and the new one have
// the same millisecond, the tie is broken by handle and the limit may
// destroy the NEW session; RegenerateId then deletes the old one: the user
// is signed out by rotating the id.
func TestAttack_LimitRegenerateIdLogsOut(t *testing.T) {
	for name, newStorages := range limitedStorages(t, 1) {
		t.Run(name, func(t *testing.T) {
			st := newStorages(t)[0]
			m := gsession.New(time.Hour, st)
			lost := 0
			const rounds = 40
			for i := 0; i < rounds; i++ {
				user := fmt.Sprintf("alice%d", i)
				id := gfsession.NewSessionId()
				s := m.New(redisReqCtx(), id)
				require.NoError(t, s.Set("uid", user))
				require.NoError(t, s.Close())

				s = m.New(redisReqCtx(), id)
				require.Equal(t, user, s.MustGet("uid").String())
				newId, err := s.RegenerateId(true)
				require.NoError(t, err)
				require.NoError(t, s.Close())
				if len(liveOf(t, st, user, []string{id, newId})) == 0 {
					lost++
				}
			}
			assert.Zero(t, lost, "of %d id rotations, %d left the user with no session", rounds, lost)
		})
	}
}

// TestAttack_RangeMissesGfSessionLoadedDuringWalk: "log everybody out" by
// walking Range and destroying each handle. Two sessions of gf's own
// storage, not yet read since the switch; while the walk runs, the owner of
// the second one makes a request (its load moves the session to its
// handle). Both sessions existed before the walk and must be visited and
// destroyed. The file storage visits gf's folder last and skips an entry
// whose handle file exists, assuming the sub-folders pass gave it: a file
// moved by a load into an already-visited sub-folder is never visited.
// (Redis and redis-hash pass: moveRaw reports a handle key already there.)
func TestAttack_RangeMissesGfSessionLoadedDuringWalk(t *testing.T) {
	for name, newBackend := range gfPairs(t) {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			ctx := context.Background()
			a := b.storage.(gfsession.Admin)
			one, two := gfsession.NewSessionId(), gfsession.NewSessionId()
			gfWrite(t, b.gf, one, map[string]any{"uid": "ann"})
			gfWrite(t, b.gf, two, map[string]any{"uid": "bob"})

			var seen []string
			require.NoError(t, a.Range(ctx, func(h string) bool {
				if len(seen) == 0 {
					other := two
					if h == gfsession.Handle(two) {
						other = one
					}
					data, err := b.storage.GetSession(redisReqCtx(), other, time.Hour)
					require.NoError(t, err)
					require.NotNil(t, data)
				}
				seen = append(seen, h)
				require.NoError(t, a.DestroyHandle(ctx, h))
				return true
			}))
			assert.ElementsMatch(t, []string{gfsession.Handle(one), gfsession.Handle(two)}, seen, "Range visits every session that existed before it")
			for _, id := range []string{one, two} {
				data, err := b.storage.GetSession(ctx, id, time.Hour)
				require.NoError(t, err)
				assert.Nil(t, data, "a session survived 'log everybody out'")
			}
		})
	}
}

// TestAttack_RedisRangeGivesMovedSessionTwice: Range moves each session of
// gf's, under its id, to its handle's key while SCAN is still iterating.
// SCAN may return a key created during the iteration: the moved session is
// then given to fn a second time (under its handle's key). Range must give
// every session once (file avoids it by reading its sub-folders first).
func TestAttack_RedisRangeGivesMovedSessionTwice(t *testing.T) {
	const n = 3000
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	prefix := redisTestPrefix()
	st := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix})
	args := []string{"EVAL", `for i = 1, #ARGV do redis.call('SET', KEYS[1] .. ARGV[i], '{"uid":"x"}', 'PX', 3600000) end return 1`, "1", prefix}
	for i := 0; i < n; i++ {
		args = append(args, gfsession.NewSessionId())
	}
	srv.MustDo(t, args...)

	seen := map[string]int{}
	total := 0
	require.NoError(t, st.(gfsession.Admin).Range(context.Background(), func(h string) bool {
		seen[h]++
		total++
		return true
	}))
	dups := 0
	for _, c := range seen {
		if c > 1 {
			dups++
		}
	}
	assert.Equal(t, n, len(seen), "sessions visited")
	assert.Zero(t, dups, "sessions given to fn more than once (%d calls for %d sessions)", total, n)
}

// TestAttack_RedisRangeLeavesNonSessionAlone: a string under the prefix
// named like a session id that holds no session. Range, which moves gf's
// sessions to their handles, neither visits nor moves it; Count, which
// sends nothing but SCAN, counts it, as documented.
func TestAttack_RedisRangeLeavesNonSessionAlone(t *testing.T) {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	prefix := redisTestPrefix()
	st := newRedisStorage(t, gfsession.TypeRedis, client, gfsession.RedisConfig{Prefix: prefix})
	ctx := context.Background()
	redisReq(t, gsession.New(time.Hour, st), gfsession.NewSessionId(), func(s *gsession.Session) { require.NoError(t, s.Set("k", 1)) })
	foreign := gfsession.NewSessionId()
	srv.MustDo(t, "SET", prefix+foreign, "not a session")
	a := st.(gfsession.Admin)
	n, err := a.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "Count counts every key under the prefix named like a session")
	ranged := 0
	require.NoError(t, a.Range(ctx, func(string) bool { ranged++; return true }))
	assert.Equal(t, 1, ranged, "Range visits sessions only")
	assert.Equal(t, "not a session", srv.MustDo(t, "GET", prefix+foreign), "Range moved or changed a key that is no session")
}

// TestAttack_LimitConcurrentLoginsCapped: maxLifetime shorter than the
// TTL, so every session is in its capped phase and the limit orders by
// the store's own activity (memory's capped time, the redis index score,
// db's write stamp). 20 concurrent logins through several storages leave
// exactly 2, also through a gredis adapter without go-redis (the index
// written before and after the write, as on a Cluster).
func TestAttack_LimitConcurrentLoginsCapped(t *testing.T) {
	const life, max = 30 * time.Minute, 2
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	other, _ := newRedisOtherAdapterClient(t, srv.Addr)
	backends := map[string]func(t *testing.T) []gsession.Storage{
		"memory": func(t *testing.T) []gsession.Storage {
			return []gsession.Storage{newMemory(t, gfsession.MemoryConfig{UserKey: "uid", MaxSessionsPerUser: max, MaxLifetime: life})}
		},
		"file": func(t *testing.T) []gsession.Storage {
			dir := t.TempDir()
			var list []gsession.Storage
			for i := 0; i < 3; i++ {
				list = append(list, newFile(t, gfsession.FileConfig{Path: dir, UserKey: "uid", MaxSessionsPerUser: max, MaxLifetime: life}))
			}
			return list
		},
	}
	for _, dialect := range dbDialects {
		backends["db/"+dialect] = func(t *testing.T) []gsession.Storage {
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			var list []gsession.Storage
			for i := 0; i < 3; i++ {
				list = append(list, newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxSessionsPerUser: max, MaxLifetime: life, CleanupInterval: -1}))
			}
			return list
		}
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		for cname, c := range map[string]*gredis.Redis{"": client, "/other-adapter": other} {
			if kind == gfsession.TypeRedis && cname != "" {
				continue // TestAttack_RedisTwoStepIndexCappedLimit
			}
			backends[kind+cname] = func(t *testing.T) []gsession.Storage {
				return cappedRedisStorages(t, kind, c, max, life)
			}
		}
	}
	for name, newStorages := range backends {
		t.Run(name, func(t *testing.T) {
			for round := 0; round < 3; round++ {
				concurrentLogins(t, newStorages(t), max)
			}
		})
	}
}

// cappedRedisStorages returns three storages of `kind` on `client` sharing
// a prefix, with maxSessionsPerUser `max` and maxLifetime `life`.
func cappedRedisStorages(t *testing.T, kind string, client *gredis.Redis, max int, life time.Duration) []gsession.Storage {
	prefix := redisTestPrefix()
	var list []gsession.Storage
	for i := 0; i < 3; i++ {
		list = append(list, newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix, UserKey: "uid", MaxSessionsPerUser: max, MaxLifetime: life}))
	}
	return list
}

// TestAttack_RedisTwoStepIndexCappedLimit: StorageRedis where the user
// index cannot be written in the write's script (a Cluster, or another
// gredis adapter): a login is indexed before its write and again after it,
// with a newer score. With maxLifetime shorter than the TTL every session
// is ordered by that score, so a session's order changes between two
// listings of racing logins: one login destroys a session that ranked low
// in its listing, another destroys the sessions that ranked below it in
// its own, and fewer than maxSessionsPerUser are left (often none: the
// user is signed out of every device). Without maxLifetime (the expiry
// orders, fixed at the write) exactly 2 are left.
func TestAttack_RedisTwoStepIndexCappedLimit(t *testing.T) {
	const max = 2
	srv := testredis.Start(t)
	other, _ := newRedisOtherAdapterClient(t, srv.Addr)
	for _, life := range []time.Duration{0, 30 * time.Minute} {
		t.Run("maxLifetime="+life.String(), func(t *testing.T) {
			for round := 0; round < 5; round++ {
				concurrentLogins(t, cappedRedisStorages(t, gfsession.TypeRedis, other, max, life), max)
			}
		})
	}
}

// attackKey is the crypto key of the sealed storages of the envelope test.
var attackKey = func() []byte {
	k := make([]byte, gfsession.CryptoKeySize)
	_, _ = rand.Read(k)
	return k
}()

// sealAttack seals `plain` as the envelope does with attackKey: key id,
// nonce, AES-256-GCM with the header and the handle as additional data.
func sealAttack(t *testing.T, header []byte, handle string, plain []byte) []byte {
	block, err := aes.NewCipher(attackKey)
	require.NoError(t, err)
	aead, err := cipher.NewGCM(block)
	require.NoError(t, err)
	sum := sha256.Sum256(attackKey)
	out := append([]byte{}, header...)
	out = append(out, sum[:4]...)
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, append(append([]byte{}, header...), handle...))
}

// TestAttack_EnvelopeWriteTimeFlagHostile: envelopes with the write-time flag (0x40)
// and the client flag (0x20), truncated or with hostile lengths, plain and
// sealed with a valid seal around a truncated payload, read as no session
// (never a panic, never an error) through the file storage and through a
// db storage that decodes the stamp for maxSessionsPerUser (GetSession,
// Sessions and a login's limit); a well-formed one reads back.
func TestAttack_EnvelopeWriteTimeFlagHostile(t *testing.T) {
	created := make([]byte, 8)
	binary.BigEndian.PutUint64(created, uint64(time.Now().UnixMilli()))
	header := func(flags byte) []byte {
		return append([]byte{0xF5, 'G', 'S', 1, flags}, created...)
	}
	stamp := created // 8 bytes of a plausible write time
	huge := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}
	jsonMap := []byte(`{"uid":"alice"}`)
	plainBad := map[string][]byte{
		"written, no bytes":         {},
		"written, 7 bytes":          stamp[:7],
		"written+client, no varint": stamp,
		"written+client, huge len":  append(append([]byte{}, stamp...), huge...),
		"written+client, short":     append(append([]byte{}, stamp...), 5, 'a', 'b'),
		"written+client, no codec":  append(append([]byte{}, stamp...), 1, 'a'),
		"written, 8 bytes, no map":  stamp,
	}
	flagsOf := func(name string) byte {
		f := byte(0x42) // json codec + written
		if len(name) > 14 && name[:14] == "written+client" {
			f |= 0x20
		}
		return f
	}

	check := func(t *testing.T, st gsession.Storage, put func(id string, blob []byte), sealed bool) {
		ctx := context.Background()
		for name, payload := range plainBad {
			id := gfsession.NewSessionId()
			h := header(flagsOf(name))
			var blob []byte
			if sealed {
				h[4] |= 0x10
				blob = sealAttack(t, h, gfsession.Handle(id), payload)
			} else {
				blob = append(h, payload...)
			}
			put(id, blob)
			var data *gmap.StrAnyMap
			var err error
			require.NotPanics(t, func() { data, err = st.GetSession(ctx, id, time.Hour) }, name)
			require.NoError(t, err, name)
			assert.True(t, data == nil || data.Size() == 0, "%s: read as a session: %v", name, data)
		}
		// Well-formed: stamp, client info, JSON map.
		id := gfsession.NewSessionId()
		payload := append(append(append([]byte{}, stamp...), 3, '1', 0, 'u'), jsonMap...)
		h := header(0x62)
		var blob []byte
		if sealed {
			h[4] |= 0x10
			blob = sealAttack(t, h, gfsession.Handle(id), payload)
		} else {
			blob = append(h, payload...)
		}
		put(id, blob)
		data, err := st.GetSession(ctx, id, time.Hour)
		require.NoError(t, err)
		require.NotNil(t, data, "a well-formed envelope with both flags")
		assert.Equal(t, "alice", data.Get("uid"))
	}

	for _, sealed := range []bool{false, true} {
		var keys [][]byte
		if sealed {
			keys = [][]byte{attackKey}
		}
		t.Run(fmt.Sprintf("file/sealed=%v", sealed), func(t *testing.T) {
			st := newFile(t, gfsession.FileConfig{CryptoKeys: keys})
			check(t, st, func(id string, blob []byte) {
				path := sessionFile(st, id)
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
				require.NoError(t, os.WriteFile(path, blob, 0o600))
			}, sealed)
		})
		t.Run(fmt.Sprintf("db/sealed=%v", sealed), func(t *testing.T) {
			db := openTestDB(t, dbTestLink(t, "pgsql"))
			table := testTable(t, db)
			st := newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", MaxSessionsPerUser: 1,
				MaxLifetime: 30 * time.Minute, ClientInfo: true, CryptoKeys: keys, CleanupInterval: -1})
			ctx := context.Background()
			var ids []string
			check(t, st, func(id string, blob []byte) {
				ids = append(ids, id)
				_, err := db.Exec(ctx, "INSERT INTO "+table+" (id, data, expires_at, created_at, user_id) VALUES (?, ?, ?, ?, ?)",
					gfsession.Handle(id), blob, time.Now().Add(20*time.Minute).UnixMilli(), int64(binary.BigEndian.Uint64(created)), "alice")
				require.NoError(t, err)
			}, sealed)
			// The listing and a login's limit decode every row of alice.
			require.NotPanics(t, func() {
				_, err := st.Sessions(ctx, "alice")
				require.NoError(t, err)
			})
			login := gfsession.NewSessionId()
			s := gsession.New(time.Hour, st).New(redisReqCtx(), login)
			require.NoError(t, s.Set("uid", "alice"))
			require.NotPanics(t, func() { require.NoError(t, s.Close()) })
			assert.Equal(t, []string{login}, liveOf(t, st, "alice", append(ids, login)), "one session of alice's left, the login")
		})
	}
}

// TestAttack_ObservedAdminDestroyOwnThenWrite: every storage wrapped by Observe with tracing (the span's
// context stands for the request's). A handler that signs its own device
// out with Destroy(ctx, id) and then sets a flash message leaves the user
// signed out; a normal logout (the Session's RemoveAll, then a flash
// message) still starts a new, anonymous session holding the message.
func TestAttack_ObservedAdminDestroyOwnThenWrite(t *testing.T) {
	for name, newStorage := range everyStorage(t, "user", 0) {
		t.Run(name, func(t *testing.T) {
			st := gfsession.Observe(newStorage(t), gfsession.ObserveConfig{Backend: name, Metrics: true, Tracing: true})
			base := startApp(t, st, appOptions{routes: func(group *ghttp.RouterGroup) {
				group.POST("/signout-self", func(r *ghttp.Request) {
					a, err := gfsession.AdminOf(r)
					if err == nil {
						_ = r.Session.MustGet("user")
						err = a.Destroy(r.Context(), r.Session.MustId())
					}
					if err != nil {
						r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
						return
					}
					r.Session.MustSet("flash", "signed out")
					r.Response.WriteJson(g.Map{"ok": true})
				})
				group.POST("/logout-flash", func(r *ghttp.Request) {
					_ = r.Session.MustGet("user")
					if err := r.Session.RemoveAll(); err != nil {
						r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
						return
					}
					r.Session.MustSet("flash", "bye")
					r.Response.WriteJson(g.Map{"ok": true})
				})
				group.GET("/flash", func(r *ghttp.Request) {
					r.Response.WriteJson(g.Map{"user": r.Session.MustGet("user").String(), "flash": r.Session.MustGet("flash").String()})
				})
			}})
			// Sign out this device by Destroy: no session left.
			_, sid := call(t, http.MethodPost, base+"/login?user=alice", "")
			require.NotEmpty(t, sid)
			call(t, http.MethodPost, base+"/signout-self", sid)
			body, _ := call(t, http.MethodGet, base+"/flash", sid)
			assert.Equal(t, "", body["user"], "the session destroyed by Destroy came back with the user")
			assert.Equal(t, "", body["flash"], "the destroyed session's write was stored")

			// A normal logout with a message: a new session holds only it.
			_, sid = call(t, http.MethodPost, base+"/login?user=bob", "")
			require.NotEmpty(t, sid)
			call(t, http.MethodPost, base+"/logout-flash", sid)
			body, _ = call(t, http.MethodGet, base+"/flash", sid)
			assert.Equal(t, "", body["user"], "the logout left the user signed in")
			assert.Equal(t, "bye", body["flash"], "the logout's message was dropped: RemoveAll then Set no longer starts a new session")
		})
	}
}
