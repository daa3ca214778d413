package gfsession

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession/storagetest"
)

// mapDriver is a whole-session backend in a Go map: what a new backend of
// the kind of file, redis and db supplies, and nothing more. The write path
// (sessionWriter) and the envelope do the rest; driverStorage shows the
// little a GetSession then needs.
type mapDriver struct {
	mu   sync.Mutex
	rows map[string]mapRow
}

type mapRow struct {
	blob    []byte
	created time.Time
	expires time.Time
}

// load returns the envelope of session `id` and restarts its TTL.
func (d *mapDriver) load(id string, ttl time.Duration) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	row, ok := d.rows[id]
	if !ok || time.Now().After(row.expires) {
		return nil
	}
	row.expires = time.Now().Add(ttl)
	d.rows[id] = row
	return row.blob
}

// swap replaces the envelope of session `id` by `blob` if it is still `old`.
func (d *mapDriver) swap(id string, old, blob []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if row, ok := d.rows[id]; ok && string(row.blob) == string(old) {
		row.blob = blob
		d.rows[id] = row
	}
}

func (d *mapDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	row, ok := d.rows[w.id]
	ok = ok && time.Now().Before(row.expires)
	switch w.match {
	case matchExists:
		if !ok {
			return false, nil
		}
	case matchCreated:
		if !ok || !row.created.Equal(w.loaded.created) {
			return false, nil
		}
	}
	d.rows[w.id] = mapRow{blob: w.blob, created: w.created, expires: time.Now().Add(w.ttl)}
	return true, nil
}

func (d *mapDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	row, ok := d.rows[l.id]
	return ok && time.Now().Before(row.expires) && row.created.Equal(l.created), nil
}

func (d *mapDriver) remove(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.rows, id)
	return nil
}

func (d *mapDriver) indexUser(ctx context.Context, user, id string) error { return nil }

// driverStorage is a gsession.Storage over a mapDriver.
type driverStorage struct {
	gsession.StorageBase
	d *mapDriver
	w sessionWriter
}

// mapDrivers holds the backend of each test: the storages a check makes
// with other options share it, as storages on one database do.
var mapDrivers sync.Map // *testing.T -> *mapDriver

func newDriverStorage(t *testing.T, maxLifetime time.Duration, keys [][]byte) *driverStorage {
	env, err := newEnvelope("", keys)
	require.NoError(t, err)
	d, loadedDriver := mapDrivers.LoadOrStore(t, &mapDriver{rows: map[string]mapRow{}})
	if !loadedDriver {
		t.Cleanup(func() { mapDrivers.Delete(t) })
	}
	s := &driverStorage{d: d.(*mapDriver)}
	var tr loadTracker
	s.w = sessionWriter{backend: "map", tracker: &tr, env: env, driver: s.d, maxLifetime: maxLifetime}
	return s
}

func (s *driverStorage) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

func (s *driverStorage) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	blob := s.d.load(sessionId, ttl)
	if blob == nil {
		return nil, nil
	}
	data, created, err := s.w.env.decodeSession(sessionId, string(blob))
	if err != nil {
		logDropped(ctx, "map", sessionId, err)
		return nil, nil
	}
	if lifetimeLeft(created, s.w.maxLifetime, ttl, time.Now()) <= 0 {
		return nil, s.d.remove(ctx, sessionId)
	}
	if len(data) == 0 {
		return nil, nil
	}
	if s.w.env.staleSeal(string(blob)) {
		// Sealed with an old key: sealed again with the first one, if no
		// write came in between.
		if sealed, err := s.w.env.encodeSession(sessionId, created, data); err == nil {
			s.d.swap(sessionId, blob, sealed)
		}
	}
	return s.w.loaded(sessionId, created, data), nil
}

func (s *driverStorage) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite("driver", sessionId, sessionData); err != nil {
		return err
	}
	return s.w.setSession(ctx, sessionId, sessionData, ttl)
}

func (s *driverStorage) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	return nil // GetSession restarted it
}

func (s *driverStorage) RemoveAll(ctx context.Context, sessionId string) error {
	return s.w.removeAll(ctx, sessionId)
}

// TestSessionDriver_Conformance shows that a new whole-session backend
// needs only its driver (and a short GetSession): the conformance suite
// passes on one kept in a Go map.
func TestSessionDriver_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) gsession.Storage {
		return newDriverStorage(t, 0, nil)
	}, storagetest.RequireAll(),
		storagetest.DropsStaleWrites(),
		storagetest.WithMaxLifetime(func(t *testing.T, maxLifetime time.Duration) gsession.Storage {
			return newDriverStorage(t, maxLifetime, nil)
		}),
		storagetest.WithCryptoKeys(func(t *testing.T, keys [][]byte) gsession.Storage {
			return newDriverStorage(t, 0, keys)
		}),
		storagetest.WithCorrupter(func(t *testing.T, st gsession.Storage, id string, data []byte) {
			s := st.(*driverStorage)
			s.d.mu.Lock()
			defer s.d.mu.Unlock()
			row := s.d.rows[id]
			row.blob, row.expires = data, time.Now().Add(time.Hour)
			s.d.rows[id] = row
		}),
		storagetest.WithCopier(func(t *testing.T, st gsession.Storage, from, to string) {
			s := st.(*driverStorage)
			s.d.mu.Lock()
			defer s.d.mu.Unlock()
			s.d.rows[to] = s.d.rows[from]
		}),
		storagetest.Excuse("Admin", "the test backend has no admin methods"),
	)
}

// hookedDriver runs `afterIndex` after a driver's indexUser: what another
// request does between a login's index entry and its write.
type hookedDriver struct {
	sessionDriver
	afterIndex func()
}

func (d hookedDriver) indexUser(ctx context.Context, user, id string) error {
	err := d.sessionDriver.indexUser(ctx, user, id)
	d.afterIndex()
	return err
}

// TestStorageFile_LoginRacesDestroyUser is a DestroyUser that runs between
// a login's index entry and its write: the session the login then stores
// is still listed, and the next DestroyUser deletes it.
func TestStorageFile_LoginRacesDestroyUser(t *testing.T) {
	ctx := context.Background()
	s, err := NewStorageFile(FileConfig{Path: t.TempDir(), UserKey: "uid", CleanupInterval: -1})
	require.NoError(t, err)
	defer s.Close(ctx)
	s.w.driver = hookedDriver{sessionDriver: s.w.driver, afterIndex: func() {
		_, err := s.DestroyUser(ctx, "ann")
		assert.NoError(t, err)
	}}
	id := NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann"}, true), time.Hour))
	n, err := s.DestroyUser(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the login's session is listed under its user")
	m, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, m, "and DestroyUser deleted it")
}

// putHookedDriver runs `afterPut` after a driver's put: what another
// request does between a write and whatever the writer does after it.
type putHookedDriver struct {
	sessionDriver
	afterPut func()
}

func (d putHookedDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	ok, err := d.sessionDriver.put(ctx, w)
	d.afterPut()
	return ok, err
}

// TestStorageFile_LogoutRacesLogin: a request logs ann out of a session
// (its write drops the user key) while another request, which loaded the
// session too, logs her back in on it right after that write. The session
// names ann again, so "log out everywhere" must still find it: nothing the
// logout does after its write may unlist it.
func TestStorageFile_LogoutRacesLogin(t *testing.T) {
	ctx := context.Background()
	s, err := NewStorageFile(FileConfig{Path: t.TempDir(), UserKey: "uid", CleanupInterval: -1})
	require.NoError(t, err)
	defer s.Close(ctx)
	id := NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"uid": "ann", "k": 1}, true), time.Hour))

	logout, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	login, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	driver := s.w.driver
	s.w.driver = putHookedDriver{sessionDriver: driver, afterPut: func() {
		s.w.driver = driver // once
		login.Set("uid", "ann")
		login.Set("k", 2)
		assert.NoError(t, s.SetSession(ctx, id, login, time.Hour))
	}}
	logout.Remove("uid")
	require.NoError(t, s.SetSession(ctx, id, logout, time.Hour))

	m, err := s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	require.Equal(t, "ann", m.Get("uid"), "the login wrote last")
	n, err := s.DestroyUser(ctx, "ann")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a session that names the user is listed under her")
	m, err = s.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, m, "and DestroyUser deleted it")
}
