package gfsession

import (
	"strings"
	"testing"

	"github.com/gogf/gf/v2/database/gdb"
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
