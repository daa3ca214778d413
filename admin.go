package gfsession

import (
	"context"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/util/gconv"
)

// Admin is session administration, implemented by every storage of this
// package: count sessions, walk their handles, destroy one, and destroy
// every session of one user ("log out everywhere").
//
// Sessions are named by their handles (see Handle), never by their ids:
// storages outside the process store no session id, so there is none to
// list, and a handle shown on a page or in a log does not work as a cookie.
//
// Users are named by the value of a configured session key, `userKey` (for
// example "userId"): a storage with a userKey keeps an index from user to
// session ids, updated on every write, so DestroyUser costs the user's
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
