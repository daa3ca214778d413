package gfsession

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
)

// Admin is session administration, implemented by every storage of this
// package: count sessions, walk their handles, destroy one, destroy every
// session of one user ("log out everywhere") or all but one ("sign out
// everywhere else"), list a user's sessions ("your devices"), and walk and
// count the users who have sessions ("online users").
//
// Sessions are named by their handles (see Handle), never by their ids:
// storages outside the process store no session id, so there is none to
// list, and a handle shown on a page or in a log does not work as a cookie.
//
// Users are named by the value of a configured session key, `userKey` (for
// example "userId"): a storage with a userKey keeps an index from user to
// sessions, updated on every write, so DestroyUser costs the user's
// sessions, not a scan of all sessions. Values of the key are compared as
// strings (gconv.String), so an int64 42 and "42" name the same user.
type Admin interface {
	// Count returns the number of live sessions. It may count sessions that
	// expired moments ago and are not yet removed.
	Count(ctx context.Context) (int, error)

	// Range calls `fn` with the handle of each live session until `fn`
	// returns false. It streams: it never holds every handle in memory at
	// once. Sessions created or deleted while it runs may or may not be
	// visited.
	Range(ctx context.Context, fn func(handle string) bool) error

	// Destroy deletes session `sessionId`. A missing session is not an error.
	Destroy(ctx context.Context, sessionId string) error

	// DestroyHandle deletes the session whose handle is `handle`. A missing
	// session, and a `handle` that is not of a handle's form (IsHandle), are
	// not errors.
	DestroyHandle(ctx context.Context, handle string) error

	// DestroyUser deletes every session whose userKey value equals `userId`
	// and returns how many it deleted. It fails with CodeInvalidOperation when
	// the storage has no userKey configured.
	DestroyUser(ctx context.Context, userId string) (int, error)

	// DestroyUserExcept is DestroyUser sparing the session whose handle is
	// `keep` ("sign out everywhere else": see SignOutOthers). It returns how
	// many sessions it deleted.
	DestroyUserExcept(ctx context.Context, userId, keep string) (int, error)

	// Sessions returns the live sessions whose userKey value equals
	// `userId` ("your devices"), the most recently active first. When `ctx`
	// is a ghttp request's, its session is marked Current. It reads the
	// user's index and each session it lists; sessions found not to be the
	// user's are left out. It fails with CodeInvalidOperation when the
	// storage has no userKey configured.
	Sessions(ctx context.Context, userId string) ([]SessionInfo, error)

	// Users calls `fn` with each user that has live sessions ("online
	// users") and the number of them, until `fn` returns false or `ctx` is
	// done. It streams: it holds a batch of users at a time (the memory
	// storage, which holds every user anyway, a copy of their ids). Users
	// who log in or out while it runs may or may not be visited. It fails
	// with CodeInvalidOperation when the storage has no userKey configured.
	Users(ctx context.Context, fn func(userId string, sessions int) bool) error

	// CountUsers returns the number of users with live sessions: what Users
	// visits, at the same cost (the db storage counts them in SQL).
	CountUsers(ctx context.Context) (int, error)
}

// countUsers counts the users `users` (an Admin's Users) visits.
func countUsers(ctx context.Context, users func(context.Context, func(string, int) bool) error) (int, error) {
	n := 0
	err := users(ctx, func(string, int) bool { n++; return true })
	return n, err
}

// SessionInfo is one live session, as Admin.Sessions lists it.
type SessionInfo struct {
	// Handle names the session (see Handle); DestroyHandle takes it. It is
	// not a secret: pages may show it, and send it back to name a session.
	Handle string `json:"handle"`
	// Created is when the session was created (the start of MaxLifetime);
	// zero for a session still in gf's format, which does not store it.
	Created time.Time `json:"created"`
	// LastActive is when a request last restarted the session's idle TTL,
	// in the steps the storage refreshes it: the file's modification time
	// (file); the expiry less the idle TTL the storage was last called with
	// (memory, redis, redis-hash, db; gf calls every storage with its
	// sessionMaxAge, so this is exact unless MaxLifetime capped the TTL).
	// db moves the expiry at most once per touchInterval.
	LastActive time.Time `json:"lastActive"`
	// Current reports whether this is the session of the request whose
	// context Sessions was given.
	Current bool `json:"current"`
	// ClientIP and UserAgent are those of the request that created or last
	// wrote the session, with the storage option clientInfo; "" without.
	ClientIP  string `json:"clientIp,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`

	// order is what maxSessionsPerUser sorts by (see activity).
	order time.Time
}

// finishSessions orders `list` most recently active first and marks the
// session of the ghttp request in `ctx`, if any, as the current one.
func finishSessions(ctx context.Context, list []SessionInfo) []SessionInfo {
	current := currentHandle(ctx)
	for i := range list {
		list[i].Current = current != "" && list[i].Handle == current
	}
	sort.SliceStable(list, func(i, j int) bool {
		return list[i].LastActive.After(list[j].LastActive)
	})
	return list
}

// currentHandle returns the handle of the session of the ghttp request in
// `ctx`, or "" when `ctx` is no request's or its session has no id.
func currentHandle(ctx context.Context) string {
	r := ghttp.RequestFromCtx(ctx)
	if r == nil || r.Session == nil {
		return ""
	}
	id, err := r.Session.Id()
	if err != nil || !IsValidSessionId(id) {
		return ""
	}
	return Handle(id)
}

// activity sets `info`.LastActive, and the order maxSessionsPerUser sorts
// by, for a session created at `info`.Created whose idle TTL ends at
// `expires`, given the idle TTL `ttl` the storage was last called with, its
// MaxLifetime `maxLifetime` (0: none), and `known`, a time the store says
// the session was active at (memory: the last use that MaxLifetime cut
// short; redis: its user index entry; zero for none).
//
// The session was last active a TTL before its expiry, unless MaxLifetime
// cut the TTL short: then the expiry is the end of its lifetime and tells
// nothing but that the session was active a TTL before it or later, and
// `known` is what there is; without it (a db session written without the
// limit), the earliest time it can have been active is taken, which ranks
// it below every session whose activity is known. The order stays the
// same until the session is used again.
func activity(info *SessionInfo, expires time.Time, ttl, maxLifetime time.Duration, known time.Time) {
	info.LastActive = expires.Add(-ttl)
	info.order = info.LastActive
	capped := maxLifetime > 0 && !info.Created.IsZero() &&
		expires.After(info.Created.Add(maxLifetime).Add(-5*time.Millisecond))
	switch {
	case !capped:
	case known.Unix() > 0:
		if known.After(info.LastActive) {
			info.LastActive = known
		}
		info.order = info.LastActive
	default:
		// Active then at the earliest: ordered (and shown) so, behind the
		// sessions whose activity is known, never ahead of a login.
		if info.LastActive.Before(info.Created) {
			info.LastActive = info.Created
		}
		info.order = info.LastActive
	}
}

// limitNeedsUserKey checks the option maxSessionsPerUser, `max`, of a
// storage of type `backend` whose userKey is `userKey`.
func limitNeedsUserKey(backend string, max int, userKey string) error {
	if err := notNegative(backend, "maxSessionsPerUser", max); err != nil {
		return err
	}
	if max > 0 && userKey == "" {
		return configError(backend, "maxSessionsPerUser",
			`needs userKey: the session key that holds the user id, e.g. userKey: "userId"`)
	}
	return nil
}

// sessionLimit is maxSessionsPerUser of a storage: after a write that made
// a session belong to a user, the user's live sessions beyond `max` are
// destroyed, the least recently active first.
//
// Every storage lists a user's sessions with the same order, LastActive
// then handle, read from what is stored and unchanged until a session is
// used again; each login keeps the first `max` of the sessions it finds. A
// session among the first `max` of all is among the first of any part of
// them, so no login destroys it, and the login written last finds every
// session and destroys all the others: however many logins race, `max`
// sessions are left (so long as none of them is used meanwhile).
type sessionLimit struct {
	backend string
	max     int
	list    func(ctx context.Context, userId string) ([]SessionInfo, error)
	destroy func(ctx context.Context, userId, handle string) error
}

// apply destroys the sessions of `user` beyond the limit. The write it
// follows is stored whatever happens here: a failure is logged, not
// returned.
func (l *sessionLimit) apply(ctx context.Context, user string) {
	if l == nil || l.max <= 0 || user == "" {
		return
	}
	list, err := l.list(ctx, user)
	if err != nil {
		g.Log().Warningf(ctx, "gfsession: %s: maxSessionsPerUser: listing the sessions of a user: %v", l.backend, err)
		return
	}
	if len(list) <= l.max {
		return
	}
	sortByActivity(list)
	// The sessions it destroys are not deleted by the request's own
	// RemoveAll (even the request's session, which racing logins may push
	// out): a further write of the request's map must not start them anew.
	ctx = adminContext(ctx)
	for _, info := range list[l.max:] {
		if err := l.destroy(ctx, user, info.Handle); err != nil {
			g.Log().Warningf(ctx, "gfsession: %s: maxSessionsPerUser: destroying session %q: %v", l.backend, shortId(info.Handle), err)
		}
	}
}

// adminContext returns `ctx` as a context of its own for the tracker (see
// ctxKey): a session deleted through it is not deleted by the request's own
// RemoveAll, so the request's Session, written again, does not start it
// anew. Destroy, DestroyHandle and maxSessionsPerUser delete through it: a
// handler that signs its own device out by handle, or a login the limit
// pushes out, stays signed out.
func adminContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerCtxKey{}, context.WithValue(context.Background(), adminCtxKey{}, nil))
}

// adminCtxKey marks the contexts of adminContext.
type adminCtxKey struct{}

// sortByActivity orders `list` most recently active first, then by handle:
// one order for every storage and every reader of the same sessions.
func sortByActivity(list []SessionInfo) {
	sort.Slice(list, func(i, j int) bool {
		if !list[i].order.Equal(list[j].order) {
			return list[i].order.After(list[j].order)
		}
		return list[i].Handle > list[j].Handle
	})
}

// ttlSeen remembers the idle TTL a storage was last called with, for
// SessionInfo.LastActive. It writes only when the TTL changes, so the
// requests of a server, which all pass the same TTL, only read it.
type ttlSeen struct{ v atomic.Int64 }

func (t *ttlSeen) note(ttl time.Duration) {
	if t.v.Load() != int64(ttl) {
		t.v.Store(int64(ttl))
	}
}

func (t *ttlSeen) get() time.Duration { return time.Duration(t.v.Load()) }

// userKeyed is the userKey of a storage of this package, for the request
// helpers (SignOutOthers, UserSessions).
type userKeyed interface {
	userKeyName() string
}

// AdminOf returns the Admin of the session storage of request `r`'s server,
// one of this package's (possibly wrapped by Observe, or by Middleware for
// the request). It fails with CodeNotSupported for another storage, and
// when this gf release's Session does not let it reach the storage.
func AdminOf(r *ghttp.Request) (Admin, error) {
	storage := storageOf(r)
	if a, ok := storage.(Admin); ok {
		return a, nil
	}
	return nil, gerror.NewCodef(gcode.CodeNotSupported,
		"gfsession: the session storage of the server (%T) is not one of gfsession's: it has no Admin", storage)
}

// storageOf returns the storage behind request `r`'s session, unwrapped of
// Middleware's per-request wrapper; nil when it cannot be reached.
func storageOf(r *ghttp.Request) gsession.Storage {
	if r == nil || r.Session == nil {
		return nil
	}
	m, ok := sessionManager(r.Session)
	if !ok {
		return nil
	}
	storage := m.GetStorage()
	if rs, ok := storage.(*requestStorage); ok {
		storage = rs.Storage
	}
	return storage
}

// requestUser returns the Admin of request `r`'s storage and the user its
// session names by the storage's userKey ("" for none).
func requestUser(r *ghttp.Request) (Admin, string, error) {
	a, err := AdminOf(r)
	if err != nil {
		return nil, "", err
	}
	keyed, ok := a.(userKeyed)
	if !ok || keyed.userKeyName() == "" {
		return nil, "", gerror.NewCodef(gcode.CodeInvalidOperation,
			`gfsession: the session storage has no userKey: the session key that holds the user id, e.g. userKey: "userId"`)
	}
	v, err := r.Session.Get(keyed.userKeyName())
	if err != nil {
		return nil, "", err
	}
	if v == nil || v.IsNil() {
		return a, "", nil
	}
	return a, v.String(), nil
}

// UserSessions returns the live sessions of the user of request `r`'s
// session, the request's own marked Current ("your devices"; see
// Admin.Sessions), or none when the session names no user. The storage
// needs a userKey.
func UserSessions(r *ghttp.Request) ([]SessionInfo, error) {
	a, user, err := requestUser(r)
	if err != nil || user == "" {
		return nil, err
	}
	return a.Sessions(r.Context(), user)
}

// SignOutOthers destroys every session of the user of request `r`'s
// session but the request's own ("sign out everywhere else"), and returns
// how many it destroyed; none when the session names no user. The storage
// needs a userKey.
func SignOutOthers(r *ghttp.Request) (int, error) {
	a, user, err := requestUser(r)
	if err != nil || user == "" {
		return 0, err
	}
	id, err := r.Session.Id()
	if err != nil {
		return 0, err
	}
	return a.DestroyUserExcept(r.Context(), user, Handle(id))
}

// errNoUserKey is DestroyUser's error for a storage without a userKey.
func errNoUserKey(backend string) error {
	return gerror.NewCodef(gcode.CodeInvalidOperation,
		`%s: DestroyUser needs the userKey option: the session key that holds the user id, e.g. userKey: "userId"`, backend)
}

// userOf returns the user id stored under `userKey` in `data`, or "" when
// no userKey is configured or the session holds none.
func userOf(data map[string]any, userKey string) string {
	if userKey == "" {
		return ""
	}
	v, ok := data[userKey]
	if !ok || v == nil {
		return ""
	}
	return gconv.String(v)
}
