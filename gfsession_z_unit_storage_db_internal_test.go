package gfsession

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
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
