package gfsession_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// gfWrite stores `data` as session `id` the way gf's storage `gf` does:
// gf's hash storage writes per key (SetMap); its SetSession does nothing.
func gfWrite(t *testing.T, gf gsession.Storage, id string, data map[string]any) {
	t.Helper()
	ctx := context.Background()
	if h, ok := gf.(*gsession.StorageRedisHashTable); ok {
		require.NoError(t, h.SetMap(ctx, id, data, time.Hour))
		return
	}
	require.NoError(t, gf.SetSession(ctx, id, gmap.NewStrAnyMapFrom(data, true), time.Hour))
}

// gfPair is a storage of this package and gf's own storage of the same
// kind on the same store, for the tests of sessions gf's storages left
// under their ids.
type gfPair struct {
	storage gsession.Storage
	gf      gsession.Storage
}

// gfPairs returns a constructor of a gfPair for each kind gf has a storage
// of outside the process: file, redis and redis-hash.
func gfPairs(t *testing.T) map[string]func(t *testing.T) gfPair {
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	pairs := map[string]func(t *testing.T) gfPair{
		"file": func(t *testing.T) gfPair {
			dir := t.TempDir()
			return gfPair{newFile(t, gfsession.FileConfig{Path: dir}), gsession.NewStorageFile(dir, time.Hour)}
		},
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		pairs[kind] = func(t *testing.T) gfPair {
			prefix := redisTestPrefix()
			var gf gsession.Storage = gsession.NewStorageRedis(client, prefix)
			if kind == gfsession.TypeRedisHash {
				gf = gsession.NewStorageRedisHashTable(client, prefix)
			}
			return gfPair{newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix}), gf}
		}
	}
	return pairs
}

// storeDump is everything an attacker who can read a session store finds
// there: the names of its keys, files or rows, and what they hold.
type storeDump struct {
	names  []string // key, file, folder and row names, index entries
	values []string // what the keys, files and rows hold
}

// add records `name`, and each part of it a cookie could be cut from: the
// parts between separators (":", "/", "."), so that a prefix or a file
// suffix does not hide an id.
func (d *storeDump) add(name string) {
	d.names = append(d.names, name)
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == ':' || r == '/' || r == '.' }) {
		d.names = append(d.names, part)
	}
}

// dumpRedis reads every key of the private server `srv`, as an RDB dump
// or a replica would give it away.
func dumpRedis(t *testing.T, srv *testredis.Server) *storeDump {
	d := &storeDump{}
	keys, _ := srv.MustDo(t, "KEYS", "*").([]any)
	for _, k := range keys {
		key := fmt.Sprint(k)
		d.add(key)
		switch srv.MustDo(t, "TYPE", key) {
		case "string":
			d.values = append(d.values, fmt.Sprint(srv.MustDo(t, "GET", key)))
		case "hash":
			all, _ := srv.MustDo(t, "HGETALL", key).([]any)
			for _, v := range all {
				d.add(fmt.Sprint(v))
				d.values = append(d.values, fmt.Sprint(v))
			}
		case "zset":
			members, _ := srv.MustDo(t, "ZRANGE", key, "0", "-1").([]any)
			for _, v := range members {
				d.add(fmt.Sprint(v))
			}
		default:
			t.Fatalf("unexpected key %q of type %v", key, srv.MustDo(t, "TYPE", key))
		}
	}
	return d
}

// dumpFolder reads every name and file under `dir`, as a backup or a
// directory listing would give it away.
func dumpFolder(t *testing.T, dir string) *storeDump {
	d := &storeDump{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, path)
		require.NoError(t, err)
		d.add(filepath.ToSlash(rel))
		if e.Type().IsRegular() {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			d.values = append(d.values, string(b))
		}
		return nil
	})
	require.NoError(t, err)
	return d
}

// dumpTable reads every row of `table`, as a SQL dump would give it away.
func dumpTable(t *testing.T, db gdb.DB, table string) *storeDump {
	d := &storeDump{}
	rows, err := db.GetAll(context.Background(), "SELECT * FROM "+table)
	require.NoError(t, err)
	for _, row := range rows {
		for column, v := range row {
			if column == "data" {
				d.values = append(d.values, v.String())
				continue
			}
			d.add(v.String())
		}
	}
	return d
}

// TestStorage_DumpHoldsNoLiveId logs users in (a fresh login, a login that
// regenerates the id, a session of gf's own storage moved on its first
// read), reads every key, file or row of the store as whoever holds a copy
// of it would, and uses every name found, and every part of one, as a
// session cookie: none is accepted, none disturbs the real sessions, and
// no session id appears anywhere in the store.
func TestStorage_DumpHoldsNoLiveId(t *testing.T) {
	type backend struct {
		storage gsession.Storage
		dump    func() *storeDump
		gf      gsession.Storage // gf's storage of the same kind, on the same store; nil for none
	}
	backends := map[string]func(t *testing.T) backend{
		"file": func(t *testing.T) backend {
			dir := t.TempDir()
			return backend{
				storage: newFile(t, gfsession.FileConfig{Path: dir, UserKey: "uid"}),
				dump:    func() *storeDump { return dumpFolder(t, dir) },
				gf:      gsession.NewStorageFile(dir, time.Hour),
			}
		},
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		for _, noPrefix := range []bool{false, true} {
			name := kind
			if noPrefix {
				name += "/noPrefix"
			}
			backends[name] = func(t *testing.T) backend {
				srv := testredis.Start(t)
				client := newGredis(t, &gredis.Config{Address: srv.Addr})
				config := gfsession.RedisConfig{Prefix: redisTestPrefix(), UserKey: "uid"}
				gfPrefix := config.Prefix
				if noPrefix {
					config.Prefix, config.NoPrefix, gfPrefix = "", true, ""
				}
				var gf gsession.Storage = gsession.NewStorageRedis(client, gfPrefix)
				if kind == gfsession.TypeRedisHash {
					gf = gsession.NewStorageRedisHashTable(client, gfPrefix)
				}
				return backend{
					storage: newRedisStorage(t, kind, client, config),
					dump:    func() *storeDump { return dumpRedis(t, srv) },
					gf:      gf,
				}
			}
		}
	}
	for _, dialect := range dbDialects {
		backends["db/"+dialect] = func(t *testing.T) backend {
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			return backend{
				storage: newDB(t, db, gfsession.DBConfig{Table: table, UserKey: "uid", CleanupInterval: -1}),
				dump:    func() *storeDump { return dumpTable(t, db, table) },
			}
		}
	}
	for name, newBackend := range backends {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			ctx := context.Background()
			m := gsession.New(time.Hour, b.storage)
			live := map[string]string{} // session id -> user

			// A fresh login.
			fresh := gfsession.NewSessionId()
			redisReq(t, m, fresh, func(s *gsession.Session) {
				require.NoError(t, s.SetMap(map[string]any{"uid": "alice", "role": "admin"}))
			})
			live[fresh] = "alice"
			// A login that guards against fixation: the visitor's id is
			// replaced.
			visitor := gfsession.NewSessionId()
			redisReq(t, m, visitor, func(s *gsession.Session) { require.NoError(t, s.Set("cart", "3 items")) })
			login := hashRequest(m, visitor)
			require.Equal(t, "3 items", login.MustGet("cart").String())
			regenerated, err := login.RegenerateId(true)
			require.NoError(t, err)
			require.NoError(t, login.Set("uid", "bob"))
			require.NoError(t, login.Close())
			live[regenerated] = "bob"
			// A session gf's storage wrote under its id, read once since.
			if b.gf != nil {
				old := gfsession.NewSessionId()
				gfWrite(t, b.gf, old, map[string]any{"uid": "carol"})
				redisReq(t, m, old, func(s *gsession.Session) { require.Equal(t, "carol", s.MustGet("uid").String()) })
				live[old] = "carol"
			}

			d := b.dump()
			require.NotEmpty(t, d.names)
			all := strings.Join(append(append([]string{}, d.names...), d.values...), "\n")
			for id := range live {
				assert.NotContains(t, all, id, "a session id is in the store")
			}
			assert.NotContains(t, all, visitor, "the replaced id is in the store")
			tried := 0
			for _, token := range d.names {
				if !gfsession.IsValidSessionId(token) {
					continue
				}
				tried++
				data, err := hashRequest(m, token).Data()
				require.NoError(t, err)
				assert.Empty(t, data, "%q from the store works as a session cookie", token)
			}
			assert.Positive(t, tried)
			for id, user := range live {
				data, err := hashRequest(m, id).Data()
				require.NoError(t, err)
				assert.Equal(t, user, fmt.Sprint(data["uid"]), "a session was disturbed by the probes")
			}
			// The dump's names are handles: Admin finds the sessions by them.
			seen := map[string]bool{}
			require.NoError(t, b.storage.(gfsession.Admin).Range(ctx, func(h string) bool { seen[h] = true; return true }))
			for id := range live {
				assert.True(t, seen[gfsession.Handle(id)], "Range misses the handle of a live session")
			}
		})
	}
}

// TestStorage_GfSessionMoveRacesLogout runs the first read of a session of
// gf's own storage (which moves it from its id to its handle) against a
// logout of the same session, many times: the session must be gone
// whichever runs first, under its id and under its handle.
func TestStorage_GfSessionMoveRacesLogout(t *testing.T) {
	type backend struct {
		storage gsession.Storage
		gf      gsession.Storage
		stored  func(id string) bool // is anything stored under the id or its handle
	}
	srv := testredis.Start(t)
	client := newGredis(t, &gredis.Config{Address: srv.Addr})
	backends := map[string]func(t *testing.T) backend{
		"file": func(t *testing.T) backend {
			dir := t.TempDir()
			s := newFile(t, gfsession.FileConfig{Path: dir})
			return backend{s, gsession.NewStorageFile(dir, time.Hour), func(id string) bool {
				_, errRaw := os.Lstat(filepath.Join(dir, id+".session"))
				_, errHandle := os.Lstat(sessionFile(s, id))
				return errRaw == nil || errHandle == nil
			}}
		},
	}
	for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
		backends[kind] = func(t *testing.T) backend {
			prefix := redisTestPrefix()
			var gf gsession.Storage = gsession.NewStorageRedis(client, prefix)
			if kind == gfsession.TypeRedisHash {
				gf = gsession.NewStorageRedisHashTable(client, prefix)
			}
			return backend{newRedisStorage(t, kind, client, gfsession.RedisConfig{Prefix: prefix}), gf, func(id string) bool {
				return srv.MustDo(t, "EXISTS", prefix+id, prefix+gfsession.Handle(id)).(int64) > 0
			}}
		}
	}
	for name, newBackend := range backends {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t)
			ctx := context.Background()
			for i := 0; i < 100; i++ {
				id := gfsession.NewSessionId()
				gfWrite(t, b.gf, id, map[string]any{"uid": "dave"})
				require.True(t, b.stored(id))
				var wg sync.WaitGroup
				wg.Add(2)
				go func() {
					defer wg.Done()
					_, err := b.storage.GetSession(ctx, id, time.Hour)
					assert.NoError(t, err)
				}()
				go func() {
					defer wg.Done()
					assert.NoError(t, b.storage.RemoveAll(ctx, id))
				}()
				wg.Wait()
				require.False(t, b.stored(id), "round %d: the session outlived its logout", i)
			}
		})
	}
}
