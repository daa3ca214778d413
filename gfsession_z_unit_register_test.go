package gfsession_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
)

func TestRegister_Panics(t *testing.T) {
	factory := func(context.Context, map[string]any) (gsession.Storage, error) { return nil, nil }
	tests := []struct {
		name    string
		regName string
		factory gfsession.Factory
		want    string
	}{
		{"empty name", "", factory, "empty name"},
		{"nil factory", "test-nil-factory", nil, "is nil"},
		{"duplicate", gfsession.TypeMemory, factory, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.PanicsWithValue(t, panicText(t, func() { gfsession.Register(tt.regName, tt.factory) }), func() {
				gfsession.Register(tt.regName, tt.factory)
			})
			assert.Contains(t, panicText(t, func() { gfsession.Register(tt.regName, tt.factory) }), tt.want)
		})
	}
}

func panicText(t *testing.T, fn func()) (text string) {
	t.Helper()
	defer func() { text, _ = recover().(string) }()
	fn()
	return ""
}

func TestRegister_Custom(t *testing.T) {
	var got map[string]any
	gfsession.Register("test-custom", func(_ context.Context, config map[string]any) (gsession.Storage, error) {
		got = config
		return gfsession.NewStorageMemory(), nil
	})
	assert.Contains(t, gfsession.Names(), "test-custom")
	assert.True(t, sort.StringsAreSorted(gfsession.Names()))
	st, err := gfsession.New(context.Background(), map[string]any{"type": "test-custom", "dsn": "x"})
	require.NoError(t, err)
	assert.IsType(t, &gfsession.StorageMemory{}, st)
	assert.Equal(t, map[string]any{"dsn": "x"}, got, "the factory gets the config without its type")
}

func TestNew_Config(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]any
		wantErr []string // substrings of the error; nil: no error
	}{
		{"memory", map[string]any{"type": "memory"}, nil},
		{"memory with options", map[string]any{"type": "memory", "maxSessions": 10, "maxLifetime": "12h", "cleanupInterval": "-1s"}, nil},
		{"negative lifetime", map[string]any{"type": "memory", "maxLifetime": "-1h"}, []string{"sessionStorage.maxLifetime", "negative"}},
		{"memory options", map[string]any{"type": "memory", "MaxSessions": "10", "maxlifetime": "12h", "cleanupInterval": "30s"}, nil},
		{"missing type", map[string]any{"maxSessions": 1}, []string{"sessionStorage.type", "missing", "memory"}},
		{"unknown type", map[string]any{"type": "redsi"}, []string{"sessionStorage.type", `"redsi"`, "valid:", "memory"}},
		{"type not a string", map[string]any{"type": 1}, []string{"sessionStorage.type", "memory"}},
		{"unknown key", map[string]any{"type": "memory", "maxSession": 1}, []string{"sessionStorage.maxSession", "unknown key", "maxSessions"}},
		{"bare number duration", map[string]any{"type": "memory", "maxLifetime": 86400}, []string{"sessionStorage.maxLifetime", "unit", "86400s"}},
		{"bare number string", map[string]any{"type": "memory", "maxLifetime": "3600"}, []string{"sessionStorage.maxLifetime", "unit"}},
		{"bad duration", map[string]any{"type": "memory", "maxLifetime": "soon"}, []string{"sessionStorage.maxLifetime", `"soon"`}},
		{"bad number", map[string]any{"type": "memory", "maxSessions": "many"}, []string{"sessionStorage.maxSessions", "whole number"}},
		{"negative number", map[string]any{"type": "memory", "maxSessions": -5}, []string{"sessionStorage.maxSessions", ">= 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := gfsession.New(context.Background(), tt.config)
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.NotNil(t, st)
				if c, ok := st.(interface{ Close(context.Context) error }); ok {
					require.NoError(t, c.Close(context.Background()))
				}
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// TestServerConfigHook guards the mechanism the config file support rests
// on: gf calling our gconv converter for ghttp.ServerConfig. If a gf upgrade
// stops calling it, this fails loudly.
func TestServerConfigHook(t *testing.T) {
	ready := gfsession.NewStorageMemory()
	t.Cleanup(func() { _ = ready.Close(context.Background()) })
	tests := []struct {
		name    string
		config  map[string]any
		check   func(t *testing.T, c ghttp.ServerConfig)
		wantErr []string
	}{
		{"short form", map[string]any{"sessionStorage": "memory", "sessionMaxAge": "2h", "address": ":0"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
				assert.Equal(t, 2*time.Hour, c.SessionMaxAge, "other keys convert as gf converts them")
				assert.Equal(t, ":0", c.Address)
				assert.Equal(t, "gfsessionid", c.SessionIdName, "defaults stay")
			}, nil},
		{"map form", map[string]any{"SessionStorage": map[string]any{"type": "memory", "maxSessions": 3}},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
			}, nil},
		{"snake case key", map[string]any{"session_storage": "memory"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
			}, nil},
		{"storage value passes through", map[string]any{"sessionStorage": ready},
			func(t *testing.T, c ghttp.ServerConfig) { assert.Same(t, ready, c.SessionStorage) }, nil},
		{"no storage key", map[string]any{"sessionIdName": "sid"},
			func(t *testing.T, c ghttp.ServerConfig) {
				assert.Nil(t, c.SessionStorage)
				assert.Equal(t, "sid", c.SessionIdName)
			}, nil},
		{"a bad value of another key is gf's business", map[string]any{"sessionStorage": "memory", "sessionMaxAge": "2x", "sessionIdName": "sid"},
			func(t *testing.T, c ghttp.ServerConfig) {
				// gf alone skips the value that does not convert; so does the hook.
				want := ghttp.NewConfig()
				require.NoError(t, gconv.Scan(map[string]any{"sessionMaxAge": "2x", "sessionIdName": "sid"}, &want))
				assert.IsType(t, &gfsession.StorageMemory{}, c.SessionStorage)
				assert.Equal(t, want.SessionMaxAge, c.SessionMaxAge)
				assert.Equal(t, "sid", c.SessionIdName)
			}, nil},
		{"unknown type", map[string]any{"sessionStorage": "memroy"}, nil, []string{"sessionStorage.type", `"memroy"`, "memory"}},
		{"unknown key", map[string]any{"sessionStorage": map[string]any{"type": "memory", "bogus": 1}}, nil, []string{"sessionStorage.bogus", "unknown key"}},
		{"not a name or map", map[string]any{"sessionStorage": 42}, nil, []string{"sessionStorage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ghttp.ConfigFromMap(tt.config)
			// The same map through Server.SetConfigWithMap, which g.Server() uses
			// to apply the config file.
			serr := ghttp.GetServer("hook-" + tt.name).SetConfigWithMap(tt.config)
			if tt.wantErr != nil {
				require.Error(t, err)
				require.Error(t, serr)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
					assert.Contains(t, serr.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			require.NoError(t, serr)
			tt.check(t, c)
		})
	}
}
