package gfsession_test

import (
	"context"
	"testing"
	"time"

	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

func newMemory(t *testing.T, config ...gfsession.MemoryConfig) *gfsession.StorageMemory {
	s := gfsession.NewStorageMemory(config...)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

func TestStorageMemory_Conformance(t *testing.T) {
	storagetest.Run(t,
		func(t *testing.T) gsession.Storage { return newMemory(t) },
		storagetest.MergesKeys(),
		storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
			return newMemory(t, gfsession.MemoryConfig{MaxLifetime: d})
		}),
	)
}
