package gfsession

import (
	"crypto/rand"
	"encoding/base64"
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
// cookie. Eight characters are enough to match a line to a session one
// already has.
func shortId(id string) string {
	if len(id) <= shortIdLength {
		return id
	}
	return id[:shortIdLength] + "..."
}
