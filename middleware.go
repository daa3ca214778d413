package gfsession

import (
	"time"

	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
)

// Middleware hardens ghttp's session handling; add it with one line:
//
//	s.Use(gfsession.Middleware)
//
// It does two things before the handler runs:
//
//   - New session ids come from NewSessionId: 192 bits from crypto/rand in
//     the URL- and cookie-safe base64 alphabet. ghttp's own ids have about
//     15 random bits; the rest is derived from the client's address, headers
//     and the clock.
//   - Session fixation: a session id sent by the client (cookie or header)
//     that the storage does not hold, because it expired, was destroyed or was
//     never issued (an attacker's invention), is replaced by a fresh id, which
//     reaches the client in the session cookie. A request can so never make
//     the server adopt an id of the client's choosing.
//
// To do the second, the middleware loads the session of every request that
// carries an id: the same single load the handler would cause, done earlier.
// When the storage cannot be reached, the request goes on and the handler
// sees the storage's error on its first session call.
//
// An attacker can still plant an id of a real session (one they opened
// themselves) in a victim's browser. Rotate the id when the privilege level
// changes, above all at login, with Regenerate.
func Middleware(r *ghttp.Request) {
	if err := r.Session.SetIdFunc(newIdFunc); err != nil {
		// The session was started by an earlier middleware: its id is already set.
		r.Middleware.Next()
		return
	}
	if r.GetSessionId() != "" {
		size, err := r.Session.Size()
		switch {
		case err != nil:
			g.Log().Warningf(r.Context(), "gfsession: Middleware: loading the session failed: %v", err)
		case size == 0:
			if _, err = r.Session.RegenerateId(false); err != nil {
				g.Log().Warningf(r.Context(), "gfsession: Middleware: replacing an unknown session id failed: %v", err)
			}
		}
	}
	r.Middleware.Next()
}

func newIdFunc(time.Duration) string { return NewSessionId() }

// Regenerate gives the request's session a new id, keeping its data and
// deleting the old id from the storage, and returns the new id, which ghttp
// sends to the client in the session cookie. Call it at login and whenever
// the session's privileges change: it defeats session fixation with ids an
// attacker obtained before the change.
func Regenerate(r *ghttp.Request) (newId string, err error) {
	return r.Session.RegenerateId(true)
}
