package gfsession

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/gogf/gf/contrib/drivers/sqlite/v2"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStorageDB_MissingDriver checks the error for a database type whose gf
// driver is not imported (the test binary imports all three, so the gdb
// error comes from a type no driver registers).
func TestStorageDB_MissingDriver(t *testing.T) {
	_, err := gdb.New(gdb.ConfigNode{Type: "gfsession-no-such-driver"})
	require.Error(t, err)
	for dbType, d := range dbDialects {
		got := explainDriverError(err, dbType, d.driver)
		assert.Contains(t, got.Error(), `_ "`+d.driver+`"`, dbType)
		assert.Contains(t, got.Error(), dbType)
	}
	other := explainDriverError(err, "oracle", "")
	assert.Contains(t, other.Error(), "mysql, mariadb, pgsql, sqlite")
}

func TestStorageDB_UserId(t *testing.T) {
	assert.Equal(t, "u1", dbUserId("u1"))
	long := strings.Repeat("é", 200) // 400 bytes
	h := dbUserId(long)
	assert.True(t, strings.HasPrefix(h, "sha256:"))
	assert.LessOrEqual(t, len(h), dbMaxUserId)
	assert.Equal(t, h, dbUserId(long))
	assert.NotEqual(t, h, dbUserId(long+"x"))
	assert.True(t, strings.HasPrefix(dbUserId("\xff"), "sha256:"))
}

// A deadlock victim or a serialization failure is run again (exec); any
// other error is not.
func TestStorageDB_RolledBack(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"mysql deadlock":    {&mysql.MySQLError{Number: 1213, SQLState: [5]byte{'4', '0', '0', '0', '1'}, Message: "Deadlock found when trying to get lock; try restarting transaction"}, true},
		"mysql duplicate":   {&mysql.MySQLError{Number: 1062, SQLState: [5]byte{'2', '3', '0', '0', '0'}, Message: "Duplicate entry"}, false},
		"pgsql deadlock":    {&pq.Error{Code: "40P01", Message: "deadlock detected"}, true},
		"pgsql serializing": {&pq.Error{Code: "40001", Message: "could not serialize access"}, true},
		"pgsql unique":      {&pq.Error{Code: "23505", Message: "duplicate key value"}, false},
		"other":             {errors.New("connection refused"), false},
	} {
		wrapped := gerror.Wrap(tc.err, "gdb") // as gdb returns it
		assert.Equal(t, tc.want, rolledBack(wrapped), name)
	}
}

func TestStorageDB_SQLiteLinkDefaults(t *testing.T) {
	for link, want := range map[string]string{
		"sqlite::@file(s.db)":                                 "sqlite::@file(s.db)?journal_mode=WAL&busy_timeout=5000",
		"sqlite::@file(s.db)?":                                "sqlite::@file(s.db)?journal_mode=WAL&busy_timeout=5000",
		"sqlite::@file(s.db)?cache=shared":                    "sqlite::@file(s.db)?cache=shared&journal_mode=WAL&busy_timeout=5000",
		"sqlite::@file(s.db)?busy_timeout=100":                "sqlite::@file(s.db)?busy_timeout=100&journal_mode=WAL",
		"sqlite::@file(s.db)?Journal_Mode=DELETE&":            "sqlite::@file(s.db)?Journal_Mode=DELETE&busy_timeout=5000",
		"sqlite::@file(s.db)?journal_mode=WAL&busy_timeout=1": "sqlite::@file(s.db)?journal_mode=WAL&busy_timeout=1",
	} {
		assert.Equal(t, want, sqliteLinkDefaults(link), link)
	}
}

// TestStorageDB_CloseStopsCleaner closes a storage while its cleaner runs a
// statement, and checks that when Close returns the cleaner's goroutine has
// ended and no statement of the storage runs: nothing of the cleaner can
// touch the database afterwards.
func TestStorageDB_CloseStopsCleaner(t *testing.T) {
	ctx := context.Background()
	db, err := gdb.New(gdb.ConfigNode{Link: "sqlite::@file(" + filepath.Join(t.TempDir(), "s.db") + ")?journal_mode=WAL&busy_timeout=5000"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(ctx) })
	plain, err := NewStorageDB(db, DBConfig{CleanupInterval: -1})
	require.NoError(t, err)
	require.NoError(t, plain.Close(ctx))
	// Expired rows enough for the cleaner to be busy for a while.
	_, err = db.Exec(ctx, `WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < 4999)
		INSERT INTO gf_sessions (id, data, expires_at, created_at) SELECT 'expired' || n, x'00', n, n FROM seq`)
	require.NoError(t, err)

	s, err := NewStorageDB(db, DBConfig{CleanupInterval: time.Millisecond, CleanupBatch: 100})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(s.guard.slots) > 0 }, 10*time.Second, 10*time.Microsecond,
		"the cleaner never ran a statement")
	require.NoError(t, s.Close(ctx))
	select {
	case <-s.cleaner.done:
	default:
		t.Fatal("Close returned before the cleaner's goroutine ended")
	}
	assert.Zero(t, len(s.guard.slots), "a statement still ran after Close returned")
	n, err := db.GetValue(ctx, "SELECT COUNT(*) FROM gf_sessions")
	require.NoError(t, err)
	assert.Positive(t, n.Int(), "the cleaner finished before Close: the test proves nothing")
}
