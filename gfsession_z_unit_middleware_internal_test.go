package gfsession

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMiddleware_ReadsSessionManager fails when a gf release moves or
// renames gsession.Session's manager field: Middleware then falls back to
// ghttp's handling, without id checks, with only a warning in the log.
func TestMiddleware_ReadsSessionManager(t *testing.T) {
	require.True(t, managerField.ok, "gsession.Session of this gf release has no usable manager field: Middleware is off; update sessionManager")
	m := gsession.New(time.Minute, gsession.NewStorageMemory())
	got, ok := sessionManager(m.New(context.Background(), "someId"))
	require.True(t, ok)
	assert.Same(t, m, got)
}

// TestMiddleware_FieldOffsetOwnFieldsOnly checks that a field promoted from
// an embedded struct, whose offset is relative to that struct, is refused.
func TestMiddleware_FieldOffsetOwnFieldsOnly(t *testing.T) {
	type inner struct {
		pad     [3]uintptr
		manager *gsession.Manager
	}
	type promoted struct {
		id string
		*inner
	}
	type own struct {
		id      string
		manager *gsession.Manager
	}
	managerType := reflect.TypeOf((*gsession.Manager)(nil))
	_, ok := fieldOffset(reflect.TypeOf(promoted{}), "manager", managerType)
	assert.False(t, ok, "a promoted field is refused")
	offset, ok := fieldOffset(reflect.TypeOf(own{}), "manager", managerType)
	assert.True(t, ok)
	assert.Equal(t, reflect.TypeOf(own{}).Field(1).Offset, offset)
	_, ok = fieldOffset(reflect.TypeOf(own{}), "manager", reflect.TypeOf(""))
	assert.False(t, ok, "a field of another type is refused")
}
