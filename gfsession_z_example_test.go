package gfsession_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

// ExampleNew builds a storage from a config map, as the `sessionStorage`
// node of gf's config file does. Durations need a unit.
func ExampleNew() {
	ctx := context.Background()
	storage, err := gfsession.New(ctx, map[string]any{
		"type":        "memory",
		"maxSessions": 100000,
		"maxLifetime": "12h",
	})
	if err != nil {
		panic(err)
	}
	defer storage.(*gfsession.StorageMemory).Close(ctx)
	fmt.Printf("%T\n", storage)

	// A bare number is refused: gf would read it as nanoseconds.
	_, err = gfsession.New(ctx, map[string]any{"type": "memory", "maxLifetime": 86400})
	fmt.Println(err)

	// Output:
	// *gfsession.StorageMemory
	// sessionStorage.maxLifetime: 86400 has no unit; write it as a string with one, e.g. "86400s" or "24h"
}

// ExampleNewStorageMemory uses a storage in code, through gf's session
// manager; ghttp does the same for every request. Values keep their Go type.
func ExampleNewStorageMemory() {
	ctx := context.Background()
	storage := gfsession.NewStorageMemory(gfsession.MemoryConfig{MaxSessions: 100000})
	defer storage.Close(ctx)
	manager := gsession.New(30*time.Minute, storage)

	// First request: no session id yet, so the session gets a new one.
	session := manager.New(ctx, "")
	_ = session.Set("user", "ann")
	_ = session.Set("visits", int64(1))
	id, _ := session.Id()
	_ = session.Close() // writes the session to the storage

	// Next request with that id.
	session = manager.New(ctx, id)
	visits, _ := session.Get("visits")
	fmt.Printf("%v (%T)\n", visits.Val(), visits.Val())
	_ = session.Close()

	// Output:
	// 1 (int64)
}

// mapStorage is a minimal custom storage: sessions in a map, with an idle
// TTL. It embeds gsession.StorageBase, which answers the per-key methods
// with ErrorDisabled, so gf's Session keeps the data of a request in memory
// and hands the storage whole sessions: GetSession when a request first
// touches its session, SetSession when a request that wrote ends, UpdateTTL
// when a request that only read ends.
type mapStorage struct {
	gsession.StorageBase
	mu       sync.Mutex
	sessions map[string]mapEntry
}

type mapEntry struct {
	data    map[string]any
	expires time.Time
}

func newMapStorage() *mapStorage {
	return &mapStorage{sessions: make(map[string]mapEntry)}
}

// New returns the id for a new session: 192 random bits.
func (s *mapStorage) New(ctx context.Context, ttl time.Duration) (string, error) {
	return gfsession.NewSessionId(), nil
}

// GetSession returns a copy, so that a request's writes stay its own until
// it ends. A missing or expired session is nil, nil.
func (s *mapStorage) GetSession(ctx context.Context, id string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sessions[id]
	if !ok || time.Now().After(e.expires) {
		return nil, nil
	}
	return gmap.NewStrAnyMapFrom(maps.Clone(e.data), true), nil
}

// SetSession stores the whole session (last writer wins). Ids are checked
// before use: a client can send any string as its session id.
func (s *mapStorage) SetSession(ctx context.Context, id string, data *gmap.StrAnyMap, ttl time.Duration) error {
	if !gfsession.IsValidSessionId(id) {
		return gerror.NewCode(gcode.CodeInvalidParameter, "invalid session id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = mapEntry{data: data.Map(), expires: time.Now().Add(ttl)}
	return nil
}

// UpdateTTL restarts the idle TTL of an existing session.
func (s *mapStorage) UpdateTTL(ctx context.Context, id string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.sessions[id]; ok && time.Now().Before(e.expires) {
		e.expires = time.Now().Add(ttl)
		s.sessions[id] = e
	}
	return nil
}

// RemoveAll deletes the session.
func (s *mapStorage) RemoveAll(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
	return nil
}

// newMapStorageFromConfig is the Factory: it gets the `sessionStorage`
// config node without its "type" key, and rejects keys it does not know.
func newMapStorageFromConfig(ctx context.Context, config map[string]any) (gsession.Storage, error) {
	for key := range config {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			"sessionStorage.%s: unknown key; the map storage has no options", key)
	}
	return newMapStorage(), nil
}

// registerOnce lets ExampleRegister run more than once (go test -count=2):
// Register panics for a name that is taken.
var registerOnce sync.Once

// ExampleRegister adds a custom storage. Once registered (normally in an
// init function), its name works in `server.sessionStorage` like the
// built-in ones.
func ExampleRegister() {
	registerOnce.Do(func() {
		gfsession.Register("example-map", newMapStorageFromConfig)
	})

	ctx := context.Background()
	storage, err := gfsession.New(ctx, map[string]any{"type": "example-map"})
	fmt.Printf("%T %v\n", storage, err)

	_, err = gfsession.New(ctx, map[string]any{"type": "example-map", "size": 10})
	fmt.Println(err)

	// The config file form, here applied to a server from a map.
	s := g.Server("example-register")
	err = s.SetConfigWithMap(map[string]any{
		"sessionMaxAge":  "30m",
		"sessionStorage": map[string]any{"type": "example-map"},
	})
	fmt.Println(err)

	// Output:
	// *gfsession_test.mapStorage <nil>
	// sessionStorage.size: unknown key; the map storage has no options
	// <nil>
}

// TestMapStorage_Conformance runs the conformance suite on the custom
// storage above, as anyone writing a storage should (README: "Writing a
// custom storage"). Checks whose option is not given are skipped, naming
// the option; RequireAll makes them fail instead, and Excuse leaves out,
// with the reason, what the storage does not do.
func TestMapStorage_Conformance(t *testing.T) {
	const plain = "the map storage keeps Go values, never a stored form"
	storagetest.Run(t, func(t *testing.T) gsession.Storage {
		return newMapStorage()
	}, storagetest.RequireAll(),
		storagetest.Excuse("CorruptData", plain),
		storagetest.Excuse("CryptoKeys", plain),
		storagetest.Excuse("SealBoundToId", plain),
		storagetest.Excuse("MaxLifetime", "the map storage has no absolute lifetime"),
		storagetest.Excuse("ReadsRefreshTTL", "the map storage has no options; SlidingExpiry checks it"),
		storagetest.Excuse("DeletedStaysDeleted", "the map storage does not track loads: a write after a logout brings the session back"),
		storagetest.Excuse("Admin", "the map storage has no admin methods"),
	)
}
