// Package storagetest is the conformance suite for gf session storages
// (gsession.Storage). Every storage of gfsession passes it, and anyone writing
// a custom storage can run it on theirs:
//
//	func TestMyStorage(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) gsession.Storage {
//			s := NewMyStorage(...)
//			t.Cleanup(func() { s.Close(context.Background()) })
//			return s
//		})
//	}
//
// The suite drives the storage through gsession.Manager and Session, the way
// ghttp does, and checks the storage contract: value round trips, sliding
// expiry down to 100 ms TTLs (every write sets the TTL, every read-only
// request restarts it), request isolation, what concurrent writers leave,
// Remove/RemoveAll/RegenerateId, hostile session ids and, with the options,
// absolute lifetimes, per-key merging of concurrent writes, writes after a
// deletion, corrupt stored data, key rotation, sealed sessions bound to
// their id and the admin methods.
//
// A check that needs an option which is not given is skipped, and the skip
// names the option to pass; with RequireAll it fails instead.
//
// `newStorage` is called once per subtest. Storages from one Run may share a
// backend (a Redis, a folder): the suite only uses fresh random session ids.
// Subtests run in parallel.
package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/container/gvar"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Option turns on checks that need more than a storage.
type Option func(*options)

type options struct {
	mergesKeys      bool
	dropsStale      bool
	requireAll      bool
	excused         map[string]string // check name -> reason
	newWithLifetime func(t *testing.T, maxLifetime time.Duration) gsession.Storage
	corrupt         func(t *testing.T, s gsession.Storage, sessionId string, data []byte)
	copy            func(t *testing.T, s gsession.Storage, fromId, toId string)
	newWithKeys     func(t *testing.T, keys [][]byte) gsession.Storage
	newWithUserKey  func(t *testing.T, userKey string) gsession.Storage
}

// RequireAll makes a check whose option is missing fail instead of being
// skipped: a storage that passes it runs every check of the suite, except
// the ones it excuses by name (Excuse). gfsession's own storages pass it, so
// that one that stops providing an option fails loudly.
func RequireAll() Option {
	return func(o *options) { o.requireAll = true }
}

// Excuse declares that check `check` (the name of a subtest of Run, e.g.
// "CorruptData") does not apply to the storage, for `reason`: Run leaves it
// out and logs the reason, also under RequireAll. A storage that keeps Go
// values in memory, for instance, has no stored form to corrupt, seal or
// copy. A name that is not a check of Run fails the suite.
func Excuse(check, reason string) Option {
	return func(o *options) {
		if o.excused == nil {
			o.excused = map[string]string{}
		}
		o.excused[check] = reason
	}
}

// MergesKeys declares that the storage merges concurrent writes per key: N
// requests of one session that each set a different key all survive, and a
// request writes back only the keys it set or removed, so a key it left
// alone keeps what a concurrent request wrote meanwhile. Without it the
// suite only checks that concurrent writers leave a readable session
// holding one writer's data whole (last writer wins).
func MergesKeys() Option {
	return func(o *options) { o.mergesKeys = true }
}

// DropsStaleWrites declares that a deleted session stays deleted: a request
// that loaded a session before another request deleted it (a logout
// elsewhere, "log out everywhere") cannot bring it back by writing after.
// A storage needs to know which maps it handed out to do that; every
// storage of gfsession does.
func DropsStaleWrites() Option {
	return func(o *options) { o.dropsStale = true }
}

// WithMaxLifetime gives a constructor for the storage with an absolute
// session lifetime; the suite then checks that an active session ends when it
// runs out.
func WithMaxLifetime(newStorage func(t *testing.T, maxLifetime time.Duration) gsession.Storage) Option {
	return func(o *options) { o.newWithLifetime = newStorage }
}

// WithCorrupter gives a function that stores `data` directly in the backend
// as the stored form of session `sessionId` of storage `s` (for a hash-based
// storage: as the value of one field). The suite then checks that corrupt
// data reads as "no session", without an error, and can be overwritten.
func WithCorrupter(corrupt func(t *testing.T, s gsession.Storage, sessionId string, data []byte)) Option {
	return func(o *options) { o.corrupt = corrupt }
}

// WithCopier gives a function `copyStored` that copies the stored form of
// session `fromId` of storage `s`, byte for byte, directly in the backend,
// to session `toId`, replacing what `toId` held (for a hash-based storage:
// the whole hash). With WithCryptoKeys the suite then checks that a sealed
// session is bound to its id: copied under another id, it reads as "no
// session", so whoever can write to the backend but does not hold the keys
// cannot move one user's session to another id.
func WithCopier(copyStored func(t *testing.T, s gsession.Storage, fromId, toId string)) Option {
	return func(o *options) { o.copy = copyStored }
}

// WithCryptoKeys gives a constructor for the storage sealing with `keys`
// (32 bytes each; the first seals, all open). Storages it returns within one
// test must share their backend. The suite then checks key rotation and that
// a session sealed with an unknown key reads as "no session".
func WithCryptoKeys(newStorage func(t *testing.T, keys [][]byte) gsession.Storage) Option {
	return func(o *options) { o.newWithKeys = newStorage }
}

// WithUserKey gives a constructor for the storage with the user index on
// session key `userKey`. The storage must then implement the admin methods
// (Count, Range, Destroy, DestroyHandle, DestroyUser, DestroyUserExcept,
// Users, CountUsers, as
// gfsession.Admin declares them: Range visits handles, see Handle; Sessions,
// whose result type is gfsession's, is left to the storage's own tests), and
// each storage it returns must have a namespace of its own (a fresh prefix,
// folder or table), so that Count is exact. The suite checks counting,
// ranging, destroying and "log out everywhere".
func WithUserKey(newStorage func(t *testing.T, userKey string) gsession.Storage) Option {
	return func(o *options) { o.newWithUserKey = newStorage }
}

// admin is the method set of gfsession.Admin, declared here so that custom
// storages need not import gfsession.
type admin interface {
	Count(ctx context.Context) (int, error)
	Range(ctx context.Context, fn func(handle string) bool) error
	Destroy(ctx context.Context, sessionId string) error
	DestroyHandle(ctx context.Context, handle string) error
	DestroyUser(ctx context.Context, userId string) (int, error)
	DestroyUserExcept(ctx context.Context, userId, keep string) (int, error)
	Users(ctx context.Context, fn func(userId string, sessions int) bool) error
	CountUsers(ctx context.Context) (int, error)
}

// Handle returns the handle of session `sessionId`, as gfsession.Handle
// does: the lower-case hex SHA-256 digest of the id. Admin names sessions
// by it (Range, DestroyHandle); it is declared here so that custom storages
// need not import gfsession.
func Handle(sessionId string) string {
	sum := sha256.Sum256([]byte(sessionId))
	return hex.EncodeToString(sum[:])
}

// Run runs the conformance suite on the storages `newStorage` returns.
func Run(t *testing.T, newStorage func(t *testing.T) gsession.Storage, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options)
	}{
		{"NewId", testNewId},
		{"RoundTrip", testRoundTrip},
		{"Struct", testStruct},
		{"MissingSession", testMissingSession},
		{"SlidingExpiry", testSlidingExpiry},
		{"SubSecondTTL", testSubSecondTTL},
		{"WritesSetTTL", testWritesSetTTL},
		{"ReadsRefreshTTL", testReadsRefreshTTL},
		{"MaxLifetime", testMaxLifetime},
		{"Isolation", testIsolation},
		{"ConcurrentWriters", testConcurrentWriters},
		{"UntouchedKeys", testUntouchedKeys},
		{"CloseAgain", testCloseAgain},
		{"Remove", testRemove},
		{"RemoveAll", testRemoveAll},
		{"DeletedStaysDeleted", testDeletedStaysDeleted},
		{"RegenerateId", testRegenerateId},
		{"HostileIds", testHostileIds},
		{"CorruptData", testCorruptData},
		{"CryptoKeys", testCryptoKeys},
		{"SealBoundToId", testSealBoundToId},
	}
	known := map[string]bool{"Admin": true}
	for _, tt := range tests {
		known[tt.name] = true
	}
	excused := make([]string, 0, len(o.excused))
	for check := range o.excused {
		excused = append(excused, check)
	}
	sort.Strings(excused)
	for _, check := range excused {
		if !known[check] {
			t.Fatalf("storagetest: Excuse(%q, %q): no such check", check, o.excused[check])
		}
		t.Logf("%s not checked: %s", check, o.excused[check])
	}
	// Admin counts sessions, so it runs alone, before the parallel subtests.
	if _, ok := o.excused["Admin"]; !ok {
		t.Run("Admin", func(t *testing.T) { testAdmin(t, newStorage, &o) })
	}
	for _, tt := range tests {
		if _, ok := o.excused[tt.name]; ok {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStorage, &o)
		})
	}
}

// need is an option a check needs, and whether it was given.
type need struct {
	option string
	given  bool
}

// requireOptions ends check `t`, which checks `what`, when one of `needs`
// was not given: skipped, naming the options to pass, or failed under
// RequireAll.
func requireOptions(t *testing.T, o *options, what string, needs ...need) {
	t.Helper()
	var missing []string
	for _, n := range needs {
		if !n.given {
			missing = append(missing, "storagetest."+n.option)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s not checked: pass %s", what, strings.Join(missing, " and "))
	if o.requireAll {
		t.Fatalf("%s (RequireAll: every check must run)", msg)
	}
	t.Skip(msg)
}

// NewId returns a fresh random session id for tests.
func NewId() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "st" + hex.EncodeToString(b[:])
}

// request runs `fn` as one request of session `id` on `m` and closes the
// session as ghttp does at the end of a request.
func request(t *testing.T, m *gsession.Manager, id string, fn func(s *gsession.Session)) {
	t.Helper()
	s := m.New(context.Background(), id)
	fn(s)
	require.NoError(t, s.Close())
}

func write(t *testing.T, m *gsession.Manager, id string, kv map[string]any) {
	t.Helper()
	request(t, m, id, func(s *gsession.Session) { require.NoError(t, s.SetMap(kv)) })
}

func readAll(t *testing.T, m *gsession.Manager, id string) map[string]any {
	t.Helper()
	var data map[string]any
	request(t, m, id, func(s *gsession.Session) {
		var err error
		data, err = s.Data()
		require.NoError(t, err)
	})
	return data
}

func exists(t *testing.T, st gsession.Storage, id string, ttl time.Duration) bool {
	t.Helper()
	data, err := st.GetSession(context.Background(), id, ttl)
	require.NoError(t, err)
	return data != nil && data.Size() > 0
}

func testNewId(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, err := st.New(context.Background(), time.Minute)
		if err != nil {
			require.ErrorIs(t, err, gsession.ErrorDisabled, "New returns an id or ErrorDisabled")
			return
		}
		require.NotEmpty(t, id)
		require.False(t, seen[id], "New returned %q twice", id)
		seen[id] = true
		for _, c := range id {
			require.True(t, c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'),
				"id %q is not cookie- and path-safe", id)
		}
	}
}

// values is what RoundTrip stores: every type with its expected read-back.
func values() map[string]any {
	ist := time.FixedZone("IST", 5*3600+1800)
	return map[string]any{
		"string":    "héllo, 世界",
		"empty":     "",
		"true":      true,
		"false":     false,
		"int":       int(math.MinInt64),
		"int8":      int8(math.MinInt8),
		"int16":     int16(math.MaxInt16),
		"int32":     int32(math.MinInt32),
		"int64":     int64(math.MaxInt64),
		"uint":      uint(math.MaxUint64),
		"uint8":     uint8(math.MaxUint8),
		"uint16":    uint16(math.MaxUint16),
		"uint32":    uint32(math.MaxUint32),
		"uint64":    uint64(math.MaxUint64),
		"float64":   0.1 + 0.2,
		"bytes":     []byte{0, 1, 2, 0xff, 0xfe, '"', '\\'},
		"timeUTC":   time.Date(2026, 11, 21, 12, 30, 45, 123456789, time.UTC),
		"timeIST":   time.Date(2026, 1, 2, 3, 4, 5, 6, ist),
		"nestedMap": map[string]any{"a": int64(1), "b": []any{"x", int64(2), map[string]any{"c": true}}},
		"list":      []any{int64(1), "two", 3.5, nil},
		"nil":       nil,
	}
}

func testRoundTrip(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	want := values()
	write(t, m, id, want)
	request(t, m, id, func(s *gsession.Session) {
		for k, w := range want {
			v, err := s.Get(k)
			require.NoError(t, err)
			if w == nil {
				assert.True(t, v == nil || v.IsNil(), "%s: want nil, got %v", k, v)
				continue
			}
			require.NotNil(t, v, "%s: missing", k)
			got := v.Val()
			if wt, ok := w.(time.Time); ok {
				gt, ok := got.(time.Time)
				require.True(t, ok, "%s: want time.Time, got %T", k, got)
				assert.True(t, wt.Equal(gt), "%s: instant %v != %v", k, gt, wt)
				_, wo := wt.Zone()
				_, gOff := gt.Zone()
				assert.Equal(t, wo, gOff, "%s: offset", k)
				continue
			}
			assert.Equal(t, w, got, "%s", k)
			assert.IsType(t, w, got, "%s", k)
		}
	})
}

// Profile is a struct value for the Struct test.
type Profile struct {
	Name    string    `json:"name"`
	Age     int       `json:"age"`
	Roles   []string  `json:"roles"`
	Balance int64     `json:"balance"`
	Since   time.Time `json:"since"`
}

func testStruct(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	want := Profile{Name: "ann", Age: 42, Roles: []string{"admin", "dev"}, Balance: math.MaxInt64,
		Since: time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)}
	write(t, m, id, map[string]any{"profile": want, "ptr": &want})
	request(t, m, id, func(s *gsession.Session) {
		for _, k := range []string{"profile", "ptr"} {
			v, err := s.Get(k)
			require.NoError(t, err)
			require.NotNil(t, v)
			var got Profile
			require.NoError(t, v.Scan(&got), k)
			assert.Equal(t, want.Name, got.Name, k)
			assert.Equal(t, want.Age, got.Age, k)
			assert.Equal(t, want.Roles, got.Roles, k)
			assert.Equal(t, want.Balance, got.Balance, k)
			assert.True(t, want.Since.Equal(got.Since), "%s: %v != %v", k, got.Since, want.Since)
		}
	})
}

func testMissingSession(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	id := NewId()
	data, err := st.GetSession(context.Background(), id, time.Minute)
	require.NoError(t, err)
	assert.True(t, data == nil || data.Size() == 0, "missing session must read as nil or empty")
	request(t, m, id, func(s *gsession.Session) {
		v, err := s.Get("k")
		require.NoError(t, err)
		assert.True(t, v == nil || v.IsNil())
	})
	require.NoError(t, st.RemoveAll(context.Background(), id), "RemoveAll of a missing session")
	err = st.UpdateTTL(context.Background(), id, time.Minute)
	assert.True(t, err == nil || isDisabled(err), "UpdateTTL of a missing session: %v", err)
	assert.False(t, exists(t, st, id, time.Minute), "UpdateTTL must not create a session")
}

func isDisabled(err error) bool {
	return err != nil && strings.Contains(err.Error(), gsession.ErrorDisabled.Error())
}

// goneWithin polls, without keeping it alive, until session `id` is gone.
// Only a poll that began 8 TTLs or more after the call and still finds the
// session fails the check: a TTL rounded up to the next second (100 ms
// taken as 1 s) does, while a stalled machine, which only delays polls,
// cannot. A storage may refresh the TTL when it loads a session (Redis
// loads and refreshes in one command), so the polls are spaced wider than
// the TTL.
func goneWithin(t *testing.T, st gsession.Storage, id string, ttl time.Duration, msg string) {
	t.Helper()
	since := time.Now()
	for {
		began := time.Now()
		data, err := st.GetSession(context.Background(), id, ttl)
		require.NoError(t, err, msg)
		if data == nil || data.Size() == 0 {
			return
		}
		require.Less(t, began.Sub(since), 8*ttl, "%s: still there %v after", msg, began.Sub(since))
		time.Sleep(ttl + ttl/2)
	}
}

func testSlidingExpiry(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	slidingExpiry(t, st, st, time.Second)
}

// slidingExpiry checks, with a TTL of `ttl`, that a session written through
// `writer` and read (never written) through `st` every ttl/5 for 3 TTLs
// stays, and that left idle it goes. The previous read refreshed the TTL at
// some time after it began, so a read that ends within ttl/2 of the
// previous one's start must find the session; a longer gap (a stalled
// machine, not the storage) proves nothing and is not judged.
func slidingExpiry(t *testing.T, writer, st gsession.Storage, ttl time.Duration) {
	every := ttl / 5
	m := gsession.New(ttl, st)
	w := gsession.New(ttl, writer)
	id := NewId()
	prevStart := time.Now()
	write(t, w, id, map[string]any{"user": "ann"})
	judged := 0
	// On a stalled machine (a loaded CI runner, a -race build) reads go on
	// until three are judged, for up to 5 s or 20 TTLs more.
	for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline) || judged < 3; {
		if time.Now().After(deadline.Add(max(20*ttl, 5*time.Second))) {
			break
		}
		start := time.Now()
		var got *gvar.Var
		request(t, m, id, func(s *gsession.Session) {
			var err error
			got, err = s.Get("user")
			require.NoError(t, err)
		})
		if gap := time.Since(prevStart); gap > ttl/2 {
			t.Logf("machine stalled: %v from the previous read to the end of this one; not judged", gap)
			if got == nil || got.IsNil() {
				prevStart = time.Now()
				write(t, w, id, map[string]any{"user": "ann"}) // start again
			} else {
				prevStart = start
			}
			time.Sleep(every)
			continue
		}
		judged++
		require.NotNil(t, got, "session expired although it was read every %v with a TTL of %v", every, ttl)
		require.Equal(t, "ann", got.String())
		prevStart = start
		time.Sleep(every)
	}
	require.GreaterOrEqual(t, judged, 3, "too few reads were judged")
	// Left idle, it must go.
	goneWithin(t, st, id, ttl, "session still there after being idle for longer than its TTL")
	assert.Empty(t, readAll(t, m, id))
}

// testSubSecondTTL checks that TTLs under a second work, neither rounded
// down (a session dead on arrival) nor up (one that outlives its TTL), and
// slide: gf's Redis storage fails or never refreshes below one second.
func testSubSecondTTL(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	slidingExpiry(t, st, st, 100*time.Millisecond)
}

// variant is a configuration of the storage, for the checks that hold for
// every configuration: each takes other paths through a storage's loads and
// writes.
type variant struct {
	name   string
	option string // the option the variant needs, "" for none
	// new returns the storage that writes a session first and the one
	// that uses it afterwards: two storages when the configuration changes
	// in between.
	new func(t *testing.T) (writer, st gsession.Storage)
}

// variants returns the storage `newStorage` makes, one with a MaxLifetime
// far away, one sealing with a key, and one whose sessions were sealed with
// a key that has been rotated out since, so that the first request that
// reads one seals it again.
func variants(newStorage func(t *testing.T) gsession.Storage, o *options) []variant {
	same := func(st gsession.Storage) (gsession.Storage, gsession.Storage) { return st, st }
	return []variant{
		{"plain", "", func(t *testing.T) (gsession.Storage, gsession.Storage) { return same(newStorage(t)) }},
		{"maxLifetime", "WithMaxLifetime", func(t *testing.T) (gsession.Storage, gsession.Storage) {
			return same(o.newWithLifetime(t, time.Hour))
		}},
		{"cryptoKeys", "WithCryptoKeys", func(t *testing.T) (gsession.Storage, gsession.Storage) {
			return same(o.newWithKeys(t, [][]byte{newKey()}))
		}},
		{"rotatedKeys", "WithCryptoKeys", func(t *testing.T) (gsession.Storage, gsession.Storage) {
			oldKey, newKey := newKey(), newKey()
			return o.newWithKeys(t, [][]byte{oldKey}), o.newWithKeys(t, [][]byte{newKey, oldKey})
		}},
	}
}

// runVariants runs `fn` on each variant whose option is given, in a
// parallel subtest of its own, but the variant named `skip`. A missing
// option is reported by the check that needs it (MaxLifetime, CryptoKeys).
func runVariants(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options, skip string,
	fn func(t *testing.T, writer, st gsession.Storage)) {
	given := map[string]bool{"": true, "WithMaxLifetime": o.newWithLifetime != nil, "WithCryptoKeys": o.newWithKeys != nil}
	for _, v := range variants(newStorage, o) {
		if v.name == skip || !given[v.option] {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			writer, st := v.new(t)
			fn(t, writer, st)
		})
	}
}

// newKey returns a random 32-byte crypto key.
func newKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// testWritesSetTTL checks that every kind of write sets the session's TTL
// to the TTL of the request that writes: a session created, changed,
// emptied and refilled, regenerated, written twice by one Session, stored
// by SetSession directly, or sealed again with a new key when read, expires
// once idle for that TTL, also when it was stored with a much longer one
// before. A write that sets no TTL leaves a session (or a Redis key) that
// lives for ever.
func testWritesSetTTL(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	runVariants(t, newStorage, o, "", writesSetTTL)
}

// writeTTL is the TTL of the writes WritesSetTTL checks.
const writeTTL = 300 * time.Millisecond

// writesSetTTL checks WritesSetTTL on sessions stored, with a TTL of an
// hour, through `writer` and written through `st`.
func writesSetTTL(t *testing.T, writer, st gsession.Storage) {
	ctx := context.Background()
	long := gsession.New(time.Hour, writer)
	short := gsession.New(writeTTL, st)
	stored := func() string {
		id := NewId()
		write(t, long, id, map[string]any{"user": "ann", "n": 1})
		return id
	}
	var ids, names []string
	add := func(name, id string) {
		ids = append(ids, id)
		names = append(names, name)
	}

	// Read only: with a rotated key, the read seals the session again. (It
	// is stored with the short TTL too: whether a read may shorten a TTL
	// is up to the storage.)
	id := NewId()
	write(t, gsession.New(writeTTL, writer), id, map[string]any{"user": "ann"})
	assert.Equal(t, "ann", fmt.Sprint(readAll(t, short, id)["user"]))
	add("a session read", id)

	id = NewId()
	write(t, short, id, map[string]any{"user": "ann"})
	add("a new session", id)

	id = stored()
	request(t, short, id, func(s *gsession.Session) { require.NoError(t, s.Set("n", 2)) })
	add("a key set", id)

	id = stored()
	request(t, short, id, func(s *gsession.Session) { require.NoError(t, s.Remove("n")) })
	add("a key removed", id)

	id = stored()
	request(t, short, id, func(s *gsession.Session) {
		require.NoError(t, s.RemoveAll())
		require.NoError(t, s.Set("flash", "logged out"))
	})
	add("RemoveAll, then Set", id)

	for _, deleteOld := range []bool{true, false} {
		var newId string
		request(t, short, stored(), func(s *gsession.Session) {
			var err error
			newId, err = s.RegenerateId(deleteOld)
			require.NoError(t, err)
		})
		add(fmt.Sprintf("RegenerateId(%v)", deleteOld), newId)
	}

	id = stored()
	s := short.New(requestCtx(), id)
	require.NoError(t, s.Set("n", 2))
	require.NoError(t, s.Close())
	require.NoError(t, s.Set("n", 3))
	require.NoError(t, s.Close())
	add("a Session closed twice", id)

	id = NewId()
	s = short.New(requestCtx(), id)
	require.NoError(t, s.Set("user", "ann"))
	require.NoError(t, s.Close())
	require.NoError(t, s.Set("n", 3))
	require.NoError(t, s.Close())
	add("a new Session closed twice", id)

	id = NewId()
	require.NoError(t, st.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "ann"}, true), writeTTL))
	add("SetSession of a new session", id)

	id = stored()
	require.NoError(t, st.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "bob"}, true), writeTTL))
	add("SetSession over a stored session", id)

	// No load to check they are there: a load restarts the TTL. Other
	// checks show that such writes store what they should.
	idleThenGone(t, st, ids, names)
}

// idleThenGone leaves sessions `ids` alone for 3 times writeTTL and then
// checks that each is gone. It waits instead of polling: a load restarts
// the TTL it checks.
func idleThenGone(t *testing.T, st gsession.Storage, ids, names []string) {
	t.Helper()
	time.Sleep(3 * writeTTL)
	for i, id := range ids {
		assert.False(t, exists(t, st, id, writeTTL),
			"%s: the session was still there after being idle for 3 times the TTL of its last write (%v)", names[i], writeTTL)
	}
}

// testReadsRefreshTTL checks that read-only requests keep a session alive
// with every configuration (SlidingExpiry checks the plain storage): with a
// MaxLifetime far away, sealed, and sealed with a rotated-out key, where the
// first read seals the session again.
func testReadsRefreshTTL(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	if o.newWithLifetime == nil && o.newWithKeys == nil {
		requireOptions(t, o, "refresh by configured storages", need{"WithMaxLifetime or storagetest.WithCryptoKeys", false})
	}
	runVariants(t, newStorage, o, "plain", func(t *testing.T, writer, st gsession.Storage) {
		slidingExpiry(t, writer, st, 300*time.Millisecond)
	})
}

func testMaxLifetime(t *testing.T, _ func(t *testing.T) gsession.Storage, o *options) {
	requireOptions(t, o, "absolute lifetime", need{"WithMaxLifetime", o.newWithLifetime != nil})
	const lifetime = 800 * time.Millisecond
	st := o.newWithLifetime(t, lifetime)
	m := gsession.New(time.Minute, st)
	id := NewId()
	start := time.Now()
	write(t, m, id, map[string]any{"user": "ann"})
	written := time.Now() // the session was created between start and here
	var gone time.Duration
	for time.Since(start) < 20*lifetime {
		readAt := time.Now()
		data := readAll(t, m, id)
		if len(data) == 0 {
			gone = time.Since(start)
			break
		}
		// Only a read that began a quarter lifetime past the cap, counted
		// from the latest the session can have been created, proves it
		// outlived the cap: a stalled machine cannot fail this.
		require.Less(t, readAt.Sub(written), lifetime+lifetime/4,
			"the session was still there %v after it was created, with a maxLifetime of %v", readAt.Sub(written), lifetime)
		// Keep it active with writes too: they must not extend the cap.
		// (Only while it is there: a write to an id whose session is gone
		// starts a new session, with a lifetime of its own.)
		request(t, m, id, func(s *gsession.Session) {
			if v, err := s.Get("user"); err == nil && v != nil && !v.IsNil() {
				require.NoError(t, s.Set("tick", time.Now().UnixNano()))
			}
		})
		time.Sleep(lifetime / 10)
	}
	require.NotZero(t, gone, "an active session outlived maxLifetime")
	assert.GreaterOrEqual(t, gone, lifetime/2, "session ended long before maxLifetime")

	// A new id for the session (RegenerateId, at login or periodically)
	// does not restart its lifetime.
	id = NewId()
	write(t, m, id, map[string]any{"user": "ann"})
	written = time.Now()
	regenerated := 0
	for time.Since(written) < 20*lifetime {
		readAt := time.Now()
		var newId string
		request(t, m, id, func(s *gsession.Session) {
			if v, err := s.Get("user"); err == nil && v != nil && !v.IsNil() {
				newId, err = s.RegenerateId(true)
				require.NoError(t, err)
			}
		})
		if newId == "" {
			break
		}
		require.Less(t, readAt.Sub(written), lifetime+lifetime/4,
			"the session was still there %v after it was created, with a maxLifetime of %v, after %d RegenerateId", readAt.Sub(written), lifetime, regenerated)
		id = newId
		regenerated++
		time.Sleep(lifetime / 10)
	}
	require.Greater(t, regenerated, 0)
}

func testIsolation(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	write(t, m, id, map[string]any{"a": "1"})
	ctx := context.Background()
	writer := m.New(ctx, id)
	require.NoError(t, writer.Set("a", "2"))
	require.NoError(t, writer.Set("b", "new"))
	// A concurrent request of the same session must not see the open request's writes.
	request(t, m, id, func(s *gsession.Session) {
		assert.Equal(t, "1", s.MustGet("a").String())
		assert.True(t, s.MustGet("b").IsNil())
	})
	require.NoError(t, writer.Close())
	request(t, m, id, func(s *gsession.Session) {
		assert.Equal(t, "2", s.MustGet("a").String())
		assert.Equal(t, "new", s.MustGet("b").String())
	})
}

func testConcurrentWriters(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	const n = 50
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	write(t, m, id, map[string]any{"base": "x"})
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := m.New(context.Background(), id)
			<-start
			if _, err := s.Get("base"); err != nil {
				errs <- err
				return
			}
			if err := s.Set(fmt.Sprintf("k%02d", i), i); err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	data := readAll(t, m, id)
	assert.Equal(t, "x", fmt.Sprint(data["base"]), "a key no writer touched was lost")
	found := 0
	for i := 0; i < n; i++ {
		if _, ok := data[fmt.Sprintf("k%02d", i)]; ok {
			found++
		}
	}
	if o.mergesKeys {
		assert.Equal(t, n, found, "lost updates: %d of %d concurrent writes of different keys survive", found, n)
	} else {
		assert.GreaterOrEqual(t, found, 1, "last writer wins, but no writer's key survived")
	}
}

// testUntouchedKeys checks what a request that loaded a session writes when
// another request changed the session meanwhile. With MergesKeys it writes
// back only the keys it set or removed: a key it left alone keeps what the
// other request wrote (a role demoted from admin to user stays user, a key
// removed stays removed, a key added stays). Without, the session holds one
// of the two requests' views whole, or their merge.
func testUntouchedKeys(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	m := gsession.New(time.Minute, newStorage(t))
	stored := map[string]any{"role": "admin", "page": "1", "theme": "dark"}
	// other demotes the user, removes a key and adds one.
	other := func(id string) {
		s := m.New(requestCtx(), id)
		require.NoError(t, s.Set("role", "user"))
		require.NoError(t, s.Remove("theme"))
		require.NoError(t, s.Set("cart", "x"))
		require.NoError(t, s.Close())
	}
	cases := []struct {
		name string
		// slow runs a request of session `id` on `m` that loads it, runs
		// `meanwhile` and ends, and returns what a merge leaves, and the
		// views of the two requests when they ended.
		slow func(id string, meanwhile func()) (merged map[string]any, views []map[string]any)
	}{
		{"a key set", func(id string, meanwhile func()) (map[string]any, []map[string]any) {
			s := m.New(requestCtx(), id)
			require.Equal(t, "admin", s.MustGet("role").String())
			meanwhile()
			require.NoError(t, s.Set("page", "2"))
			require.NoError(t, s.Close())
			return map[string]any{"role": "user", "page": "2", "cart": "x"}, []map[string]any{
				{"role": "admin", "page": "2", "theme": "dark"}, {"role": "user", "page": "1", "cart": "x"}}
		}},
		{"a key removed", func(id string, meanwhile func()) (map[string]any, []map[string]any) {
			s := m.New(requestCtx(), id)
			require.Equal(t, "1", s.MustGet("page").String())
			meanwhile()
			require.NoError(t, s.Remove("page"))
			require.NoError(t, s.Close())
			return map[string]any{"role": "user", "cart": "x"}, []map[string]any{
				{"role": "admin", "theme": "dark"}, {"role": "user", "page": "1", "cart": "x"}}
		}},
		{"a Session closed twice", func(id string, meanwhile func()) (map[string]any, []map[string]any) {
			s := m.New(requestCtx(), id)
			require.NoError(t, s.Set("page", "2"))
			require.NoError(t, s.Close())
			meanwhile()
			require.NoError(t, s.Set("page", "3"))
			require.NoError(t, s.Close())
			return map[string]any{"role": "user", "page": "3", "cart": "x"}, []map[string]any{
				{"role": "admin", "page": "3", "theme": "dark"}, {"role": "user", "page": "2", "cart": "x"}}
		}},
	}
	for _, c := range cases {
		id := NewId()
		write(t, m, id, stored)
		merged, views := c.slow(id, func() { other(id) })
		got := readAll(t, m, id)
		if o.mergesKeys {
			assert.Equal(t, merged, got, "%s: the request wrote back keys it left alone over another request's changes", c.name)
			continue
		}
		assert.Contains(t, append(views, merged), got,
			"%s: the session holds neither request's view whole nor their merge", c.name)
	}

	// A session the request created itself (a login), changed by another
	// request, then written again by the first.
	id := NewId()
	login := m.New(requestCtx(), id)
	require.NoError(t, login.SetMap(stored))
	require.NoError(t, login.Close())
	other(id)
	require.NoError(t, login.Set("page", "2"))
	require.NoError(t, login.Close())
	got := readAll(t, m, id)
	if o.mergesKeys {
		assert.Equal(t, map[string]any{"role": "user", "page": "2", "cart": "x"}, got,
			"a new session written again wrote back keys it left alone over another request's changes")
	} else {
		assert.Contains(t, []map[string]any{{"role": "admin", "page": "2", "theme": "dark"},
			{"role": "user", "page": "1", "cart": "x"}, {"role": "user", "page": "2", "cart": "x"}}, got,
			"a new session written again: neither view whole nor the merge")
	}
}

// testCloseAgain checks a Session that is closed, changed and closed again,
// as a long-lived one may be (gf writes it at every Close once it is dirty):
// each write sends its own changes, its removals included, and with
// MergesKeys leaves alone the keys another request wrote in between.
func testCloseAgain(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	write(t, m, id, map[string]any{"a": "1", "user": "alice"})
	s := m.New(context.Background(), id)
	v, err := s.Get("a")
	require.NoError(t, err)
	require.Equal(t, "1", v.String())
	write(t, m, id, map[string]any{"b": "2"}) // another request
	require.NoError(t, s.Set("c", "3"))
	require.NoError(t, s.Close())
	require.NoError(t, s.Remove("user"))
	require.NoError(t, s.Close())

	data := readAll(t, m, id)
	assert.Equal(t, "1", fmt.Sprint(data["a"]))
	assert.Equal(t, "3", fmt.Sprint(data["c"]))
	assert.NotContains(t, data, "user", "the key removed before the second Close is still there")
	if o.mergesKeys {
		assert.Equal(t, "2", fmt.Sprint(data["b"]), "the second Close lost another request's key")
	}

	// The same for a session the Session created (a login).
	id = NewId()
	login := m.New(context.Background(), id)
	require.NoError(t, login.SetMap(map[string]any{"user": "bob", "a": "1"}))
	require.NoError(t, login.Close())
	write(t, m, id, map[string]any{"b": "2"})
	require.NoError(t, login.Remove("user"))
	require.NoError(t, login.Close())
	data = readAll(t, m, id)
	assert.Equal(t, "1", fmt.Sprint(data["a"]))
	assert.NotContains(t, data, "user", "the key removed before the second Close is still there")
	if o.mergesKeys {
		assert.Equal(t, "2", fmt.Sprint(data["b"]), "the second Close lost another request's key")
	}
}

func testRemove(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	m := gsession.New(time.Minute, newStorage(t))
	id := NewId()
	write(t, m, id, map[string]any{"a": "1", "b": "2", "c": "3"})
	request(t, m, id, func(s *gsession.Session) { require.NoError(t, s.Remove("a", "b")) })
	assert.Equal(t, map[string]any{"c": "3"}, readAll(t, m, id))
}

func testRemoveAll(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	id := NewId()
	write(t, m, id, map[string]any{"user": "ann"})
	request(t, m, id, func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })
	assert.False(t, exists(t, st, id, time.Minute), "session still stored after RemoveAll")
	assert.Empty(t, readAll(t, m, id))
	// Direct storage call, as admin code would make it.
	id2 := NewId()
	write(t, m, id2, map[string]any{"user": "bob"})
	require.NoError(t, st.RemoveAll(context.Background(), id2))
	assert.False(t, exists(t, st, id2, time.Minute))

	// A request that logs its session out and writes again (a flash
	// message) starts a new session under the id.
	id3 := NewId()
	write(t, m, id3, map[string]any{"user": "bob"})
	s := m.New(requestCtx(), id3)
	require.NoError(t, s.RemoveAll())
	require.NoError(t, s.Set("flash", "logged out"))
	require.NoError(t, s.Close())
	assert.Equal(t, map[string]any{"flash": "logged out"}, readAll(t, m, id3), "RemoveAll, then Set, by one request")
}

// requestCtx is a context of its own, as each ghttp request has: a storage
// may tell the requests of one session apart by their context.
func requestCtx() context.Context {
	return context.WithValue(context.Background(), requestCtxKey{}, NewId())
}

type requestCtxKey struct{}

// testDeletedStaysDeleted checks, with DropsStaleWrites, that a request
// that loaded a session before another request deleted it cannot bring it
// back by writing after.
func testDeletedStaysDeleted(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	requireOptions(t, o, "writes after a deletion", need{"DropsStaleWrites", o.dropsStale})
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	id := NewId()
	write(t, m, id, map[string]any{"user": "ann", "n": 1})
	s := m.New(requestCtx(), id)
	v, err := s.Get("user")
	require.NoError(t, err)
	require.Equal(t, "ann", v.String())
	require.NoError(t, st.RemoveAll(requestCtx(), id), "the logout of another request")
	require.NoError(t, s.Set("n", 2))
	require.NoError(t, s.Close())
	assert.False(t, exists(t, st, id, time.Minute), "a request that loaded the session before it was deleted brought it back")
	// The same Session written again: still deleted.
	require.NoError(t, s.Set("n", 3))
	require.NoError(t, s.Close())
	assert.False(t, exists(t, st, id, time.Minute), "a second write of the same Session brought it back")

	// Deleted and replaced: the logout of another request that leaves a
	// message starts a new session under the id, which a request that
	// loaded the old one must not overwrite with the old user.
	id = NewId()
	write(t, m, id, map[string]any{"user": "ann", "n": 1})
	s = m.New(requestCtx(), id)
	v, err = s.Get("user")
	require.NoError(t, err)
	require.Equal(t, "ann", v.String())
	logoutWithMessage(t, m, id)
	require.NoError(t, s.Set("n", 2))
	require.NoError(t, s.Close())
	assert.Equal(t, map[string]any{"flash": "logged out"}, readAll(t, m, id),
		"a request that loaded the session before it was replaced wrote into the new one")

	// The same for a session the request created itself and writes again
	// (gf writes a Session that is changed after Close, and closed again).
	id = NewId()
	s = m.New(requestCtx(), id)
	require.NoError(t, s.Set("user", "carl"))
	require.NoError(t, s.Close())
	logoutWithMessage(t, m, id)
	require.NoError(t, s.Set("n", 5))
	require.NoError(t, s.Close())
	assert.Equal(t, map[string]any{"flash": "logged out"}, readAll(t, m, id),
		"a request that created the session before it was replaced wrote into the new one")
}

// logoutWithMessage is a request of its own that logs session `id` out and
// leaves a message: RemoveAll, then Set, a new session under the id.
func logoutWithMessage(t *testing.T, m *gsession.Manager, id string) {
	t.Helper()
	// Storages tell sessions of one id apart by their creation time, kept
	// in milliseconds: a real logout comes in a later millisecond than the
	// login. The login was stored before this call, so it was created at
	// `now` or before.
	afterMillisecond(t, time.Now())
	logout := m.New(requestCtx(), id)
	require.NoError(t, logout.RemoveAll())
	require.NoError(t, logout.Set("flash", "logged out"))
	require.NoError(t, logout.Close())
}

// afterMillisecond returns once the clock is in a later millisecond than
// `instant`, so that whatever is created from now on has a creation time,
// in milliseconds, later than anything created by `instant`.
func afterMillisecond(t *testing.T, instant time.Time) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().UnixMilli() <= instant.UnixMilli(); {
		if time.Now().After(deadline) {
			t.Fatalf("the clock did not move past %v in a second", instant)
		}
		runtime.Gosched()
	}
}

func testRegenerateId(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	for _, deleteOld := range []bool{true, false} {
		old := NewId()
		write(t, m, old, map[string]any{"user": "ann", "n": int64(7)})
		var newId string
		request(t, m, old, func(s *gsession.Session) {
			require.Equal(t, "ann", s.MustGet("user").String())
			var err error
			newId, err = s.RegenerateId(deleteOld)
			require.NoError(t, err)
			require.NoError(t, s.Set("after", true))
		})
		require.NotEqual(t, old, newId)
		data := readAll(t, m, newId)
		assert.Equal(t, "ann", fmt.Sprint(data["user"]), "deleteOld=%v: data did not move to the new id", deleteOld)
		assert.EqualValues(t, 7, data["n"])
		assert.Equal(t, true, data["after"])
		assert.Equal(t, !deleteOld, exists(t, st, old, time.Minute), "deleteOld=%v: old id", deleteOld)
	}
}

// HostileIds are session ids a client may send to escape a storage's
// namespace or break it. Every storage must read them as "no session" and
// refuse to write them.
var HostileIds = []string{
	"", " ", ".", "..", "../x", "../../etc/passwd", "a/b", `a\b`, "/abs", "x\x00y", "\x00",
	strings.Repeat("a", 10*1024), "*", "a*", "?", "[a-z]", "{tag}x", "{a}{b}", "a b", "é",
	"a\r\nb", "%2e%2e%2f", "a:b", "a;b", "a,b", "a'b", `a"b`, "$(id)",
}

func testHostileIds(t *testing.T, newStorage func(t *testing.T) gsession.Storage, _ *options) {
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	ctx := context.Background()
	for _, id := range HostileIds {
		name := fmt.Sprintf("%.20q", id)
		data, err := st.GetSession(ctx, id, time.Minute)
		assert.NoError(t, err, name)
		assert.True(t, data == nil || data.Size() == 0, "%s: hostile id read as a session", name)
		if id != "" {
			err = st.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"k": "v"}, true), time.Minute)
			assert.Error(t, err, "%s: SetSession accepted a hostile id", name)
		}
		assert.NotPanics(t, func() {
			_ = st.RemoveAll(ctx, id)
			_ = st.UpdateTTL(ctx, id, time.Minute)
		}, name)
		data, err = st.GetSession(ctx, id, time.Minute)
		assert.NoError(t, err, name)
		assert.True(t, data == nil || data.Size() == 0, "%s: hostile id was stored", name)
		assert.NotPanics(t, func() {
			s := m.New(ctx, id)
			_, _ = s.Get("k")
			_ = s.Close()
		}, name)
	}
}

func testCorruptData(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	requireOptions(t, o, "corrupt stored data", need{"WithCorrupter", o.corrupt != nil})
	st := newStorage(t)
	m := gsession.New(time.Minute, st)
	random := make([]byte, 300)
	_, _ = rand.Read(random)
	cases := map[string][]byte{
		"garbage":       []byte("this is not a session"),
		"random":        random,
		"magic only":    {0xF5, 'G', 'S'},
		"header only":   {0xF5, 'G', 'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"bad version":   {0xF5, 'G', 'S', 99, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"truncated map": {0xF5, 'G', 'S', 1, 1, 0, 0, 1, 0x90, 0, 0, 0, 0, 19, 200},
		"bad json":      []byte(`{"a":`),
		"json array":    []byte(`[1,2,3]`),
		"value marker":  {0xF5, 0x01, 0xFF},
	}
	for name, blob := range cases {
		id := NewId()
		o.corrupt(t, st, id, blob)
		data, err := st.GetSession(context.Background(), id, time.Minute)
		require.NoError(t, err, "%s: corrupt data must read as no session, not fail the request", name)
		if data != nil {
			for k, v := range data.Map() {
				// A hash storage reads field by field: the corrupter's own
				// field may read as a plain string (gf's hash layout stores
				// those), but nothing else may come out of the blob.
				assert.True(t, k == "value" || k == "corrupt", "%s: corrupt data read as a session holding %q=%v", name, k, v)
			}
		}
		// The session is recoverable: a new write replaces the corrupt one.
		write(t, m, id, map[string]any{"fresh": "yes"})
		assert.Equal(t, "yes", fmt.Sprint(readAll(t, m, id)["fresh"]), name)
	}
}

func testCryptoKeys(t *testing.T, _ func(t *testing.T) gsession.Storage, o *options) {
	requireOptions(t, o, "sealing and key rotation", need{"WithCryptoKeys", o.newWithKeys != nil})
	oldKey, newKey, otherKey := newKey(), newKey(), newKey()
	id := NewId()
	write(t, gsession.New(time.Minute, o.newWithKeys(t, [][]byte{oldKey})), id, map[string]any{"user": "ann"})

	// Rotation: the new key seals, the old one still opens.
	rotated := gsession.New(time.Minute, o.newWithKeys(t, [][]byte{newKey, oldKey}))
	assert.Equal(t, "ann", fmt.Sprint(readAll(t, rotated, id)["user"]), "a session sealed with a rotated-out key must still open")
	write(t, rotated, id, map[string]any{"user": "ann2"})
	assert.Equal(t, "ann2", fmt.Sprint(readAll(t, gsession.New(time.Minute, o.newWithKeys(t, [][]byte{newKey})), id)["user"]))

	// A session that is only read after the rotation is sealed again with
	// the new key: reads keep it alive, so it must not need the old key for
	// ever.
	readOnly := NewId()
	write(t, gsession.New(time.Minute, o.newWithKeys(t, [][]byte{oldKey})), readOnly, map[string]any{"user": "bob", "n": int64(7)})
	assert.Equal(t, "bob", fmt.Sprint(readAll(t, rotated, readOnly)["user"]))
	assert.Equal(t, map[string]any{"user": "bob", "n": int64(7)}, readAll(t, gsession.New(time.Minute, o.newWithKeys(t, [][]byte{newKey})), readOnly),
		"a session only read since the rotation still needs the old key")

	// A storage without the sealing key reads no session and no error.
	st := o.newWithKeys(t, [][]byte{otherKey})
	data, err := st.GetSession(context.Background(), id, time.Minute)
	require.NoError(t, err)
	assert.True(t, data == nil || data.Size() == 0, "a session sealed with an unknown key must read as no session")
}

// testSealBoundToId checks that a sealed session is bound to its id: its
// stored form copied under another id, a new one or one holding a session
// already, reads as "no session" there, so whoever can write to the backend
// cannot move a session to another id (another user's cookie, a fixated
// id) without the keys. The copies are checked to be exact first: copied
// back to its own id, the session reads as before.
func testSealBoundToId(t *testing.T, _ func(t *testing.T) gsession.Storage, o *options) {
	requireOptions(t, o, "binding of sealed sessions to their id",
		need{"WithCryptoKeys", o.newWithKeys != nil}, need{"WithCopier", o.copy != nil})
	ctx := context.Background()
	st := o.newWithKeys(t, [][]byte{newKey()})
	m := gsession.New(time.Minute, st)
	admin, victim, fresh, scratch := NewId(), NewId(), NewId(), NewId()
	want := map[string]any{"user": "root", "role": "admin"}
	write(t, m, admin, want)
	write(t, m, victim, map[string]any{"user": "bob", "role": "user"})

	for _, to := range []string{fresh, victim} {
		o.copy(t, st, admin, to)
		data, err := st.GetSession(ctx, to, time.Minute)
		require.NoError(t, err, "a session copied under another id must read as no session, not fail the request")
		assert.True(t, data == nil || data.Size() == 0, "a sealed session copied under another id reads as a session: %v", data)
		assert.Empty(t, readAll(t, m, to), "a sealed session copied under another id reads as a session")
	}
	assert.Equal(t, want, readAll(t, m, admin), "the session copied from")

	// The copier copies exactly: a copy put back under the id it was
	// sealed for opens.
	o.copy(t, st, admin, scratch)
	require.NoError(t, st.RemoveAll(ctx, admin))
	require.False(t, exists(t, st, admin, time.Minute))
	o.copy(t, st, scratch, admin)
	assert.Equal(t, want, readAll(t, m, admin), "a copy put back under its own id must open: the copier does not copy the stored form")
}

func testAdmin(t *testing.T, newStorage func(t *testing.T) gsession.Storage, o *options) {
	ctx := context.Background()
	if a, ok := newStorage(t).(admin); ok {
		_, err := a.DestroyUser(ctx, "anyone")
		assert.Error(t, err, "DestroyUser without a userKey must fail, not silently do nothing")
	}
	requireOptions(t, o, "the admin methods", need{"WithUserKey", o.newWithUserKey != nil})
	const userKey = "uid"
	st := o.newWithUserKey(t, userKey)
	a, ok := st.(admin)
	require.True(t, ok, "a storage given by WithUserKey must implement Count, Range, Destroy, DestroyHandle, DestroyUser, DestroyUserExcept, Users and CountUsers")
	m := gsession.New(time.Minute, st)

	// Five clients of user u1, two of user 2 (an int64 id), one anonymous.
	var u1, u2 []string
	for i := 0; i < 5; i++ {
		id := NewId()
		write(t, m, id, map[string]any{userKey: "u1", "client": i})
		u1 = append(u1, id)
	}
	for i := 0; i < 2; i++ {
		id := NewId()
		write(t, m, id, map[string]any{userKey: int64(2)})
		u2 = append(u2, id)
	}
	anon := NewId()
	write(t, m, anon, map[string]any{"cart": "x"})

	n, err := a.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, n, "Count")
	seen := map[string]bool{}
	require.NoError(t, a.Range(ctx, func(handle string) bool { seen[handle] = true; return true }))
	for _, id := range append(append([]string{anon}, u1...), u2...) {
		assert.True(t, seen[Handle(id)], "Range missed the handle of %s", id)
		assert.False(t, seen[id], "Range gave away session id %s: it visits handles", id)
	}
	assert.Len(t, seen, 8, "Range")
	calls := 0
	require.NoError(t, a.Range(ctx, func(string) bool { calls++; return false }))
	assert.Equal(t, 1, calls, "Range must stop when fn returns false")

	// Online users: the two users with their session counts, not the
	// anonymous session.
	users := map[string]int{}
	require.NoError(t, a.Users(ctx, func(u string, n int) bool { users[u] += n; return true }))
	assert.Equal(t, map[string]int{"u1": 5, "2": 2}, users, "Users")
	n, err = a.CountUsers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "CountUsers")
	calls = 0
	require.NoError(t, a.Users(ctx, func(string, int) bool { calls++; return false }))
	assert.Equal(t, 1, calls, "Users must stop when fn returns false")

	require.NoError(t, a.Destroy(ctx, anon))
	assert.False(t, exists(t, st, anon, time.Minute), "Destroy")
	require.NoError(t, a.Destroy(ctx, NewId()), "Destroy of a missing session")
	byHandle := NewId()
	write(t, m, byHandle, map[string]any{"cart": "y"})
	require.NoError(t, a.DestroyHandle(ctx, byHandle), "DestroyHandle of a session id, not a handle")
	assert.True(t, exists(t, st, byHandle, time.Minute), "DestroyHandle given a session id must not find the session by it")
	require.NoError(t, a.DestroyHandle(ctx, Handle(byHandle)))
	assert.False(t, exists(t, st, byHandle, time.Minute), "DestroyHandle")
	require.NoError(t, a.DestroyHandle(ctx, Handle(NewId())), "DestroyHandle of a missing session")

	// Sign out everywhere else: u1's sessions go but the one kept, which
	// stays listed; user 2's stay.
	n, err = a.DestroyUserExcept(ctx, "u1", Handle(u1[0]))
	require.NoError(t, err)
	assert.Equal(t, 4, n, "DestroyUserExcept(u1, the first)")
	assert.True(t, exists(t, st, u1[0], time.Minute), "DestroyUserExcept destroyed the session it was to keep")
	for _, id := range u1[1:] {
		assert.False(t, exists(t, st, id, time.Minute), "u1 session %s survived DestroyUserExcept", id)
	}
	for _, id := range u2 {
		assert.True(t, exists(t, st, id, time.Minute), "another user's session was destroyed")
	}
	n, err = a.DestroyUserExcept(ctx, "u1", u1[0])
	require.NoError(t, err)
	assert.Equal(t, 1, n, "DestroyUserExcept keeps by handle, never by id")

	// Log out everywhere: all of u1's sessions go, user 2's stay.
	for _, id := range u1 {
		write(t, m, id, map[string]any{userKey: "u1"})
	}
	n, err = a.DestroyUser(ctx, "u1")
	require.NoError(t, err)
	assert.Equal(t, 5, n, "DestroyUser(u1)")
	for _, id := range u1 {
		assert.False(t, exists(t, st, id, time.Minute), "u1 session %s survived DestroyUser", id)
	}
	for _, id := range u2 {
		assert.True(t, exists(t, st, id, time.Minute), "another user's session was destroyed")
	}
	n, err = a.DestroyUser(ctx, "u1")
	require.NoError(t, err)
	assert.Zero(t, n, "a second DestroyUser finds nothing")

	// The index follows writes: a session that changes user, and a logout.
	switched := NewId()
	write(t, m, switched, map[string]any{userKey: "u3"})
	write(t, m, switched, map[string]any{userKey: "u4"})
	n, err = a.DestroyUser(ctx, "u3")
	require.NoError(t, err)
	assert.Zero(t, n, "the session now belongs to u4")
	assert.True(t, exists(t, st, switched, time.Minute))
	request(t, m, u2[0], func(s *gsession.Session) { require.NoError(t, s.RemoveAll()) })
	n, err = a.DestroyUser(ctx, "2")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "DestroyUser(2) after one of its sessions logged out; int64 user ids match as strings")
	n, err = a.DestroyUser(ctx, "u4")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = a.Count(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "every session is gone")
}
