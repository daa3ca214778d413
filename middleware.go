package gfsession

import (
	"net/http"
	"sync"
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
// When that load fails (the storage cannot be reached), the request goes on
// with a fresh id, so that a storage back by the time the handler runs
// cannot adopt the client's id. The user is not logged in for that request,
// as the storage could not say who they are, and if the handler writes to
// the session, ghttp sends the fresh id and the user's session is left
// behind: a short outage can log out the users whose requests it hits. When replacing an
// unknown id fails, the request is answered 503 Service Unavailable.
//
// An attacker can still plant an id of a real session (one they opened
// themselves) in a victim's browser. Rotate the id when the privilege level
// changes, above all at login, with Regenerate.
func Middleware(r *ghttp.Request) {
	if err := r.Session.SetIdFunc(newIdFunc); err != nil {
		// The session was started by an earlier middleware: its id is
		// already set, and checking it now would be too late.
		startedEarly.Do(func() {
			g.Log().Warningf(r.Context(), "gfsession: Middleware: the session was started before it ran (by an earlier middleware); register gfsession.Middleware first, or ids are not checked")
		})
		r.Middleware.Next()
		return
	}
	if r.GetSessionId() != "" {
		size, err := r.Session.Size()
		switch {
		case err != nil:
			g.Log().Warningf(r.Context(), "gfsession: Middleware: loading the session failed, going on with a new id: %v", err)
			// The failed load left the session unstarted: its id can change.
			if err = r.Session.SetId(NewSessionId()); err != nil {
				g.Log().Errorf(r.Context(), "gfsession: Middleware: %v", err)
				r.Response.WriteStatus(http.StatusServiceUnavailable)
				return
			}
		case size == 0:
			if _, err = r.Session.RegenerateId(false); err != nil {
				// The session keeps the client's id: the handler must not
				// run, or it could write under that id.
				g.Log().Warningf(r.Context(), "gfsession: Middleware: replacing an unknown session id failed: %v", err)
				r.Response.WriteStatus(http.StatusServiceUnavailable)
				return
			}
		}
	}
	r.Middleware.Next()
}

func newIdFunc(time.Duration) string { return NewSessionId() }

// startedEarly logs once that Middleware runs too late to check ids.
var startedEarly sync.Once

// Regenerate gives the request's session a new id, keeping its data and
// deleting the old id from the storage, and returns the new id, which ghttp
// sends to the client in the session cookie. Call it at login and whenever
// the session's privileges change: it defeats session fixation with ids an
// attacker obtained before the change.
func Regenerate(r *ghttp.Request) (newId string, err error) {
	return r.Session.RegenerateId(true)
}
