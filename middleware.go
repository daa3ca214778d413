package gfsession

import (
	"context"
	"net/http"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"
)

// Middleware hardens ghttp's session handling; add it with one line, before
// any middleware that uses the session:
//
//	s.Use(gfsession.Middleware)
//
// New ids: session ids come from NewSessionId, 192 bits from crypto/rand in
// the URL- and cookie-safe base64 alphabet. ghttp's own ids have about 15
// random bits; the rest is derived from the client's address, headers and
// the clock.
//
// Session fixation: before the handler runs, the middleware loads the
// session the request names (cookie or header): the single load the handler
// would cause, done earlier, and handed to r.Session, so it costs nothing
// more. An id the storage does not hold (expired, destroyed, malformed, or
// never issued: an attacker's invention) is dropped: r.Session starts out
// empty and without an id, so that
//
//   - a request that only reads the session costs no further storage call
//     and gets no session cookie: the client keeps the cookie it has, which
//     matters when it was just replaced by a login response that crossed
//     this request on the wire;
//   - a request that writes the session gets a fresh id from NewSessionId
//     in the session cookie, never the client's.
//
// r.Session is not started when the handler runs, so r.Session.SetId and
// r.Session.SetIdFunc work there as they do without the middleware; an id
// set with SetId is the handler's choice and is used as is (loaded on first
// use), unchecked.
//
// Storage outage: when the load fails, the request keeps the client's id,
// and every session call of the handler that needs the data returns that
// load's error (the Must* methods panic, which ghttp answers with 500), as
// it does without the middleware; the load is not retried within the
// request. The session is neither replaced nor written, so a short outage
// logs nobody out, and a storage that comes back during the request can
// never adopt the client's id.
//
// Acknowledged means stored: when the handler chain returns to the
// middleware, it writes the session (or refreshes its TTL) at once, before
// ghttp sends the response, instead of after it as ghttp does. When that
// write fails, the buffered response is replaced by 503 Service Unavailable
// (the storage could not be reached or timed out: a condition that passes),
// or by 500 Internal Server Error when the storage refused the data itself
// (an error with gcode.CodeInvalidParameter, such as a value the codec
// cannot store: no retry fixes it); a response that already has an error
// status (400 or more) keeps it. The session cookie is then not sent, so
// the client keeps its session, and the write is not tried again. A
// response the handler already sent (flushed, streamed or hijacked) cannot
// change: the failure is only logged, as is a failed TTL refresh of a
// session the request did not change. ghttp's own close of the session
// after the response writes nothing more, unless something changed the
// session after the middleware wrote it (middleware registered before this
// one, or hooks): such a change is written after the response, as ghttp
// does.
//
// A middleware registered before this one (or a BeforeServe hook) that
// already used the session leaves the middleware nothing to check: it logs
// a warning once and lets the request through unchanged, with ghttp's
// session and ghttp's handling of it.
//
// An attacker can still plant an id of a real session (one they opened
// themselves) in a victim's browser. Rotate the id when the privilege level
// changes, above all at login, with Regenerate.
func Middleware(r *ghttp.Request) {
	manager, ok := sessionManager(r.Session)
	if !ok {
		r.Middleware.Next()
		return
	}
	var (
		ctx     = r.Context()
		ttl     = manager.GetTTL()
		storage = &requestStorage{Storage: manager.GetStorage()}
		id      = r.GetSessionId()
	)
	if id != "" && IsValidSessionId(id) {
		data, err := storage.Storage.GetSession(ctx, id, ttl)
		if err == nil && data != nil && data.Size() == 0 {
			// An empty map may be a session whose data lives in the
			// storage, not in the map (gf's StorageRedisHashTable).
			var size int
			if size, err = storage.Storage.GetSize(ctx, id); gerror.Is(err, gsession.ErrorDisabled) || size <= 0 {
				data, err = nil, nil
			}
		}
		switch {
		case err != nil && !gerror.Is(err, gsession.ErrorDisabled):
			g.Log().Warningf(ctx, "gfsession: Middleware: loading session %q failed: %v", shortId(id), err)
			storage.id, storage.loadErr = id, err
		case data != nil:
			storage.id, storage.loaded = id, data
		}
	}
	// Without an id (none sent, or one the storage does not hold), the
	// session gets one from newIdFunc when it first needs one.
	r.Session = newRequestSession(ctx, ttl, storage)
	session := r.Session

	r.Middleware.Next()

	if r.Session == session {
		closeBeforeResponse(r, ttl, storage)
	}
}

// newRequestSession returns an unstarted session on `storage`, with the id
// `storage` loaded, if any.
func newRequestSession(ctx context.Context, ttl time.Duration, storage *requestStorage) *gsession.Session {
	session := gsession.New(ttl, storage).New(ctx, storage.id)
	// SetIdFunc fails only on a started session.
	_ = session.SetIdFunc(newIdFunc)
	return session
}

// closeBeforeResponse writes the request's session (or refreshes its TTL),
// as ghttp would after the response, and turns a failure into an error
// response.
func closeBeforeResponse(r *ghttp.Request, ttl time.Duration, storage *requestStorage) {
	ctx := r.Context()
	var err error
	storage.closing = true
	if data := storage.loaded; data != nil && data.Size() > 0 {
		// Loaded, but the handler did not use it: refresh its TTL, as
		// closing a session that was used only for reading would.
		err = storage.UpdateTTL(ctx, storage.id, ttl)
	} else {
		err = r.Session.Close()
	}
	storage.closing = false
	if err == nil {
		return
	}
	if !storage.writing {
		// Only the TTL refresh of a session the request did not change
		// failed: the request stored nothing, and ghttp would only log it.
		g.Log().Warningf(ctx, "gfsession: Middleware: refreshing the session's TTL failed: %v", err)
		return
	}
	// Nothing of this request's session is stored: the client keeps its
	// cookie, and ghttp neither sends a new one nor writes again.
	storage.id, storage.loaded, storage.loadErr = "", nil, nil
	r.Session = newRequestSession(ctx, ttl, storage)
	res := r.Response
	if res.IsHeaderWrote() || res.IsHijacked() {
		g.Log().Errorf(ctx, "gfsession: Middleware: storing the session failed after the response was sent: %v", err)
		return
	}
	g.Log().Stack(false).Errorf(ctx, "gfsession: Middleware: storing the session failed, answering with an error: %v", err)
	if res.Status >= http.StatusBadRequest {
		return
	}
	status := http.StatusServiceUnavailable
	if gerror.Code(err) == gcode.CodeInvalidParameter {
		status = http.StatusInternalServerError
	}
	res.ClearBuffer()
	res.Header().Set("Content-Type", "text/plain; charset=utf-8")
	res.WriteStatus(status)
}

func newIdFunc(time.Duration) string { return NewSessionId() }

// requestStorage is the storage of one request's session behind Middleware.
// It passes every call to the server's storage, except that
//
//   - the load Middleware made is handed to the session instead of loading
//     again, and a load that failed fails again without a storage call;
//   - after Middleware closed the session, ghttp's close writes nothing
//     more, unless the session changed since.
//
// A request's session is used by one goroutine at a time (gsession.Session
// is not safe for concurrent use), so it has no lock.
type requestStorage struct {
	gsession.Storage

	id      string          // the client's id, loaded by Middleware
	loaded  *gmap.StrAnyMap // what that load returned: the session's data
	loadErr error           // or how it failed

	closing bool   // Middleware is closing the session
	writing bool   // the close Middleware made wrote (not only refreshed the TTL)
	stored  string // the id Middleware closed with; "" once the session changed since
}

// GetSession returns the session Middleware loaded for its id (once), the
// error that load failed with (every time), and loads any other id.
func (s *requestStorage) GetSession(ctx context.Context, id string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if id == s.id && id != "" {
		if s.loadErr != nil {
			return nil, s.loadErr
		}
		if data := s.loaded; data != nil {
			s.loaded = nil
			return data, nil
		}
	}
	return s.Storage.GetSession(ctx, id, ttl)
}

// SetSession writes the session, unless Middleware wrote it already and it
// did not change since.
func (s *requestStorage) SetSession(ctx context.Context, id string, data *gmap.StrAnyMap, ttl time.Duration) error {
	if id == s.stored {
		return nil
	}
	if s.closing {
		s.writing = true
	}
	return s.closed(id, s.Storage.SetSession(ctx, id, data, ttl))
}

// UpdateTTL refreshes the session's TTL, unless Middleware did already and
// the session did not change since.
func (s *requestStorage) UpdateTTL(ctx context.Context, id string, ttl time.Duration) error {
	if id == s.stored {
		return nil
	}
	return s.closed(id, s.Storage.UpdateTTL(ctx, id, ttl))
}

// closed records that Middleware closed session `id`: whether that worked
// or not, ghttp's close does not try again (a failed write is answered with
// an error, and a failed TTL refresh would only fail again, after the
// response, or wait for the storage once more).
func (s *requestStorage) closed(id string, err error) error {
	if s.closing {
		s.stored = id
	}
	return err
}

// The session's changes: gf's Session calls these before it changes its own
// data, so after them the session is no longer what Middleware stored.

func (s *requestStorage) Set(ctx context.Context, id string, key string, value any, ttl time.Duration) error {
	s.stored = ""
	return s.Storage.Set(ctx, id, key, value, ttl)
}

func (s *requestStorage) SetMap(ctx context.Context, id string, data map[string]any, ttl time.Duration) error {
	s.stored = ""
	return s.Storage.SetMap(ctx, id, data, ttl)
}

func (s *requestStorage) Remove(ctx context.Context, id string, key string) error {
	s.stored = ""
	return s.Storage.Remove(ctx, id, key)
}

func (s *requestStorage) RemoveAll(ctx context.Context, id string) error {
	s.stored = ""
	return s.Storage.RemoveAll(ctx, id)
}

// sessionManager returns the manager (the storage and the TTL) of the
// request's session `s`, which Middleware needs to load the session without
// starting it: neither ghttp.Server nor gsession.Session has a getter for
// it, so it is read from Session's field, which gf has kept since v2.0. It
// returns false, after logging why once, when Middleware cannot use it: `s`
// has started already, or the field is not there (a gf release that
// changed Session).
func sessionManager(s *gsession.Session) (*gsession.Manager, bool) {
	if !managerField.ok {
		logOnce(&layoutChanged, "gfsession: Middleware: this gf release's gsession.Session has no manager field; ids are not checked and sessions are written after the response")
		return nil, false
	}
	if s.SetIdFunc(newIdFunc) != nil {
		// Started by an earlier middleware: its id is already in use.
		logOnce(&startedEarly, "gfsession: Middleware: the session was started before it ran (by an earlier middleware); register gfsession.Middleware first, or ids are not checked")
		return nil, false
	}
	m := *(**gsession.Manager)(unsafe.Add(unsafe.Pointer(s), managerField.offset))
	return m, m != nil && m.GetStorage() != nil
}

// managerField is where gsession.Session keeps its *gsession.Manager.
var managerField = func() (f struct {
	offset uintptr
	ok     bool
}) {
	sf, ok := reflect.TypeOf(gsession.Session{}).FieldByName("manager")
	if ok && sf.Type == reflect.TypeOf((*gsession.Manager)(nil)) {
		f.offset, f.ok = sf.Offset, true
	}
	return f
}()

// startedEarly and layoutChanged log once why Middleware cannot check ids.
var startedEarly, layoutChanged sync.Once

func logOnce(once *sync.Once, msg string) {
	once.Do(func() { g.Log().Warning(context.Background(), msg) })
}

// Regenerate gives the request's session a new id, keeping its data and
// deleting the old id from the storage, and returns the new id, which ghttp
// sends to the client in the session cookie. Call it at login and whenever
// the session's privileges change: it defeats session fixation with ids an
// attacker obtained before the change. Requests of the same client still
// carrying the old id (sent before the response arrived) then read as
// anonymous; behind Middleware they get no session cookie unless they
// write, so they cannot overwrite the new one.
func Regenerate(r *ghttp.Request) (newId string, err error) {
	return r.Session.RegenerateId(true)
}
