package gfsession_test

import (
	"context"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

type codecNode struct {
	Next any `json:"next"`
}

type codecBig struct {
	N big.Int `json:"n"`
}

// unstorableValues are values no codec stores so that they come back: the
// write must fail.
func unstorableValues() map[string]any {
	var structs, maps any = "leaf", "leaf"
	for i := 0; i < gfsession.MaxValueDepth+1; i++ {
		structs = codecNode{Next: structs}
		maps = map[string]any{"next": maps}
	}
	huge, _ := new(big.Int).SetString("1267650600228229401496703205377", 10)
	return map[string]any{
		"deep-structs": structs,
		"deep-maps":    maps,
		"huge-in-json": codecBig{N: *huge},
		"channel":      make(chan int),
	}
}

// TestStorages_RefuseUnstorableValues sets, on every storage and codec,
// values the codec cannot give back: Session.Close fails with an error
// naming the key, and the session as stored before loads, intact. The
// memory storage keeps Go values as they are, so it takes them and gives
// them back.
func TestStorages_RefuseUnstorableValues(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		checkUnstorable(t, gfsession.NewStorageMemory(), false)
	})
	for _, codec := range []string{gfsession.CodecBinary, gfsession.CodecJSON} {
		t.Run("file/"+codec, func(t *testing.T) {
			checkUnstorable(t, newFile(t, gfsession.FileConfig{Codec: codec}), true)
		})
		for _, kind := range []string{gfsession.TypeRedis, gfsession.TypeRedisHash} {
			t.Run(kind+"/"+codec, func(t *testing.T) {
				srv := testredis.Start(t)
				client := newGredis(t, &gredis.Config{Address: srv.Addr})
				checkUnstorable(t, newRedisStorage(t, kind, client, gfsession.RedisConfig{Codec: codec}), true)
			})
		}
		for _, dialect := range dbDialects {
			t.Run("db-"+dialect+"/"+codec, func(t *testing.T) {
				db := openTestDB(t, dbTestLink(t, dialect))
				checkUnstorable(t, newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), Codec: codec}), true)
			})
		}
	}
}

func checkUnstorable(t *testing.T, storage gsession.Storage, refuses bool) {
	ctx := context.Background()
	m := gsession.New(time.Minute, storage)
	s := m.New(ctx)
	require.NoError(t, s.Set("user", "ann"))
	require.NoError(t, s.Set("n", 1))
	id, err := s.Id()
	require.NoError(t, err)
	require.NoError(t, s.Close())

	for key, value := range unstorableValues() {
		s = m.New(ctx, id)
		require.NoError(t, s.Set("n", 2))
		require.NoError(t, s.Set(key, value))
		err = s.Close()
		if refuses {
			require.Error(t, err, "%s is stored", key)
			assert.Equal(t, gcode.CodeInvalidParameter, gerror.Code(err), "%v", err)
			assert.Contains(t, err.Error(), `session key "`+key+`"`)
		} else {
			require.NoError(t, err)
		}

		s = m.New(ctx, id)
		data, err := s.Data()
		require.NoError(t, err)
		assert.Equal(t, "ann", data["user"], "the session stored before must load")
		if !refuses {
			assert.Equal(t, 2, data["n"])
			assert.True(t, reflect.DeepEqual(value, data[key]) || key == "channel", "%s changed", key)
			require.NoError(t, s.Remove(key))
			require.NoError(t, s.Close())
			continue
		}
		assert.EqualValues(t, 1, data["n"], "the refused write must change nothing")
		assert.NotContains(t, data, key)
		require.NoError(t, s.Close())
	}
}
