package gfsession

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

const (
	// sessionIdRandomBytes is the entropy of ids made by NewSessionId: 24 bytes
	// (192 bits), which base64url-encode to exactly 32 characters, the length of
	// gf's own ids.
	sessionIdRandomBytes = 24

	// MaxSessionIdLength is the longest session id any storage here accepts.
	MaxSessionIdLength = 128
)

// sessionIdChars marks the bytes a session id may hold.
var sessionIdChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	return t
}()

// NewSessionId returns a new session id of 192 bits from crypto/rand, encoded
// as 32 characters of the URL- and cookie-safe base64 alphabet (A-Z a-z 0-9 - _).
func NewSessionId() string {
	var b [sessionIdRandomBytes]byte
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+);
	// it crashes the program irrecoverably instead of handing out weak ids.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// IsValidSessionId reports whether `id` is acceptable as a session id: 1 to
// MaxSessionIdLength characters from A-Z, a-z, 0-9, '-' and '_'.
//
// Every storage here runs it before an id reaches a file path, a Redis key or
// a query, so ids such as "../x", "a/b", "*", "{tag}" or ones holding NUL bytes
// never touch the backend: they read as "no session" and cannot be written.
// Ids made by gf (32 lower-case letters and digits) and by NewSessionId pass.
func IsValidSessionId(id string) bool {
	if len(id) == 0 || len(id) > MaxSessionIdLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !sessionIdChars[id[i]] {
			return false
		}
	}
	return true
}

// errInvalidId is the error for a write to an invalid session id.
func errInvalidId(id string) error {
	return gerror.NewCodef(gcode.CodeInvalidParameter, "invalid session id %q", shortId(id))
}

// shortIdLength is how many characters of a session id shortId keeps.
const shortIdLength = 8

// shortId returns session id `id` as log lines and error messages show it:
// its first shortIdLength characters and "...". A session id is a bearer
// token, and logs and error messages are read by more people, and kept
// longer, than the session store: they must never hold one that works as a
// cookie. The storages name a session by its handle (see Handle), so a
// line shows the first characters of the handle: enough to match it to a
// session one already has, or to a page of Admin's.
func shortId(id string) string {
	if len(id) <= shortIdLength {
		return id
	}
	return id[:shortIdLength] + "..."
}

// HandleLength is the length of a session handle (see Handle).
const HandleLength = 2 * sha256.Size

// Handle returns the handle of session `sessionId`: the lower-case hex
// SHA-256 digest of the id, 64 characters. Every storage here that keeps
// sessions outside the process stores a session under its handle, never
// under its id (Redis keys, file names, database keys, user-index entries),
// so whoever reads the store (a replica, a backup, SCAN output, a directory
// listing, a SQL dump) finds nothing that works as a session cookie. The
// handle is not a secret: Admin names sessions by it, and pages may show
// it. It cannot be turned back into the id.
func Handle(sessionId string) string {
	sum := sha256.Sum256([]byte(sessionId))
	var b [HandleLength]byte
	hex.Encode(b[:], sum[:])
	return string(b[:])
}

// IsHandle reports whether `s` has the form of a handle: HandleLength
// characters of lower-case hex.
func IsHandle(s string) bool {
	if len(s) != HandleLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// loadByHandle loads session `id` from under its handle with `get`, which
// reports whether anything was stored there; when nothing was, it moves a
// session gf's storage left under the id itself to the handle with `move`
// (which reports whether there is a session under the handle now) and
// loads it from there.
func loadByHandle[M any](id string, get func(handle string) (M, bool, error), move func(handle string) (bool, error)) (M, error) {
	h := Handle(id)
	m, found, err := get(h)
	if found || err != nil {
		return m, err
	}
	if moved, err := move(h); !moved || err != nil {
		var none M
		return none, err
	}
	m, _, err = get(h)
	return m, err
}

// mayBeStoredRaw reports whether session `id` may be stored under the id
// itself, as gf's own storages store sessions, so that a storage reading
// gf's sessions should look there when the handle finds nothing. An id of
// the form of a handle never is: looking it up raw would find the session
// whose handle it is, and a store's dump would work as cookies.
func mayBeStoredRaw(id string) bool {
	return !IsHandle(id)
}
