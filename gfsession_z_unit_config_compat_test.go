package gfsession_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/tcpproxy"
)

// TestConfigCompat_CodeValuesStillAccepted: a config struct that the
// constructors accepted before their options were checked in one place is
// still accepted, with the meaning it had: a negative RedisConfig.MaxLifetime
// is no absolute lifetime (as a negative MemoryConfig.MaxLifetime still is),
// a negative DBConfig.CleanupBatch is DefaultDBCleanupBatch. A program that
// ran must not fail at start-up after an upgrade.
func TestConfigCompat_CodeValuesStillAccepted(t *testing.T) {
	redis, err := gredis.New(&gredis.Config{Address: "127.0.0.1:1"}) // never dialled
	require.NoError(t, err)
	t.Cleanup(func() { _ = redis.Close(context.Background()) })

	t.Run("redis maxLifetime", func(t *testing.T) {
		s, err := gfsession.NewStorageRedis(redis, gfsession.RedisConfig{MaxLifetime: -time.Hour})
		require.NoError(t, err, "a negative MaxLifetime meant none")
		require.NotNil(t, s)
	})
	t.Run("redis-hash maxLifetime", func(t *testing.T) {
		s, err := gfsession.NewStorageRedisHash(redis, gfsession.RedisConfig{MaxLifetime: -time.Hour})
		require.NoError(t, err, "a negative MaxLifetime meant none")
		require.NotNil(t, s)
	})
	t.Run("db cleanupBatch", func(t *testing.T) {
		db, err := gdb.New(gdb.ConfigNode{Link: "sqlite::@file(" + filepath.Join(t.TempDir(), "s.db") + ")"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close(context.Background()) })
		s, err := gfsession.NewStorageDB(db, gfsession.DBConfig{CleanupBatch: -1, CleanupInterval: -1})
		require.NoError(t, err, "a negative CleanupBatch meant DefaultDBCleanupBatch")
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		_, err = s.Cleanup(context.Background())
		assert.NoError(t, err)
	})
}

// TestConfigCompat_DBStartupErrorCode: a db storage of a config map that
// cannot create its table at start-up fails New with
// CodeInvalidConfiguration, as every error of New did, so that an
// application telling config errors apart by code still does; the message
// names the storage once, without a stray "db:" where the key would be.
func TestConfigCompat_DBStartupErrorCode(t *testing.T) {
	// query_only: gf's SQLite driver runs it as a PRAGMA on every
	// connection, so CREATE TABLE fails as it does without the privilege.
	link := "sqlite::@file(" + filepath.Join(t.TempDir(), "ro.db") + ")?query_only=1"
	s, err := gfsession.New(context.Background(), map[string]any{"type": gfsession.TypeDB, "link": link})
	require.Error(t, err)
	require.Nil(t, s)
	assert.Equal(t, gcode.CodeInvalidConfiguration, gerror.Code(err), "%v", err)
	assert.NotContains(t, err.Error(), "sessionStorage: db: ", "a type where a key would be")
}

// TestConfigCompat_DBTimeoutOffStartup: New returns within its short start-up
// check when the database does not answer (New's contract), also for a db
// storage whose `timeout` is "off" or negative: no bound on statements must
// not mean that g.Server() waits forever at start-up for the table to be
// created.
func TestConfigCompat_DBTimeoutOffStartup(t *testing.T) {
	link := dbTestLink(t, "mysql")
	openTestDB(t, link)
	match := linkAddr.FindStringSubmatch(link)
	require.NotNil(t, match, "the test link %q names no @tcp(address)", link)
	for _, timeout := range []string{"off", "-1s"} {
		t.Run(timeout, func(t *testing.T) {
			proxy, err := tcpproxy.New(match[1])
			require.NoError(t, err)
			t.Cleanup(func() { _ = proxy.Close() })
			require.NoError(t, proxy.Blackhole())
			type result struct {
				s   gsession.Storage
				err error
			}
			done := make(chan result, 1)
			go func() {
				s, err := gfsession.New(context.Background(), map[string]any{
					"type":            gfsession.TypeDB,
					"link":            strings.Replace(link, match[0], "@tcp("+proxy.Addr()+")", 1),
					"timeout":         timeout,
					"cleanupInterval": "off",
				})
				done <- result{s, err}
			}()
			select {
			case r := <-done:
				require.NoError(t, r.err, "a database that does not answer must not stop start-up")
				closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = r.s.(*gfsession.StorageDB).Close(closeCtx)
			case <-time.After(10 * time.Second):
				t.Fatalf(`New with timeout %q did not return within 10s for a database that does not answer`, timeout)
			}
		})
	}
}
