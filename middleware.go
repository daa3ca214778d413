package gfsession

import (
	"context"
	"net/http"
	"reflect"
	"strings"
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
// A storage whose GetSession returns an empty map or
// gsession.ErrorDisabled for a live session (its data lives behind Get and
// Set, as with gf's StorageRedisHashTable or a storage built on
// gsession.StorageBase) is asked for the session's size instead; one that
// implements neither cannot tell, and its ids are kept as gf keeps them.
//
// r.Session is not started when the handler runs, so r.Session.SetId and
// r.Session.SetIdFunc work there as they do without the middleware; an id
// set with SetId is the handler's choice and is used as is (loaded on first
// use), unchecked. Such ids, and those of a handler's SetIdFunc, must pass
// IsValidSessionId (1 to MaxSessionIdLength characters of A-Z, a-z, 0-9, '-'
// and '_'): the next request drops any other id unread, as it does an
// unknown one, and the middleware logs a warning when a session is stored
// under one.
//
// Storage outage: when the load fails (GetSession, or the size check
// above), the request keeps the client's id, and every session call of the
// handler that needs the data returns that load's error (the Must* methods
// panic, which ghttp answers with 500), as it does without the middleware;
// the load is not retried within the request. The session is neither
// replaced nor written, so a short outage logs nobody out, and a storage
// that comes back during the request can never adopt the client's id.
//
// Acknowledged means stored: when the handler chain returns to the
// middleware, it closes the request's session at once (writes it, or
// refreshes its TTL; a loaded session the handler did not use, or left for
// an id of its own, has its TTL refreshed too), before ghttp sends the
// response, instead of after it as ghttp does. When that write fails, the
// buffered response is replaced by 503 Service Unavailable (the storage
// could not be reached or timed out: a condition that passes), or by 500
// Internal Server Error when the storage refused the data itself (an error
// with gcode.CodeInvalidParameter, such as a value the codec cannot store:
// no retry fixes it); a response that already has an error status (400 or
// more) keeps it. The replacement drops the handler's body, its Location,
// Content-*, caching and cookie headers, and has Cache-Control: no-store. No
// cookie the handler set with r.Cookie is sent, nor a session cookie: the
// client keeps its session. The write is not tried again, and for the rest
// of the request (hooks such as BeforeOutput) r.Session is a closed
// session: every call on it returns an error, and it neither writes nor
// makes ghttp send a cookie. A response the handler already sent (flushed,
// streamed or hijacked) cannot change: the failure is only logged, as is a
// failed TTL refresh of a session the request did not change. ghttp's own
// close of the session after the response writes nothing more, unless
// something changed the session after the middleware wrote it (hooks): such
// a change is written after the response, as ghttp does.
//
// A middleware registered before this one (or a BeforeServe hook) that
// already used the session started it with the client's id. The middleware
// then loads that id once more: when the storage does not hold it, the
// request goes on with a fresh session as above (keeping what the earlier
// middleware wrote to it, if anything); when the storage cannot be asked,
// the request is answered with 500 and an error is logged, rather than
// adopt an id nobody checked. A session the storage holds is left to ghttp
// (written after the response), with a warning logged once: register the
// middleware first.
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
		early   map[string]any // what an earlier reader wrote to a session dropped
	)
	if r.Session.SetIdFunc(newIdFunc) != nil {
		// Started by an earlier middleware or hook: its id is in use.
		if !checkStartedSession(r, storage.Storage, ttl) {
			return
		}
		// The id it uses is one the storage does not hold: the request
		// goes on with a fresh session, as if the id had not been sent,
		// with what the earlier reader wrote to it, if anything.
		if r.Session.IsDirty() {
			early, _ = r.Session.Data()
		}
		id = ""
	}
	if id != "" && IsValidSessionId(id) {
		data, known, err := loadSession(ctx, storage.Storage, id, ttl)
		switch {
		case err != nil:
			g.Log().Warningf(ctx, "gfsession: Middleware: loading session %q failed: %v", shortId(id), err)
			storage.id, storage.loadErr = id, err
		case known:
			storage.id, storage.loaded, storage.unused = id, data, true
		}
	}
	// Without an id (none sent, or one the storage does not hold), the
	// session gets one from newIdFunc when it first needs one.
	r.Session = newRequestSession(ctx, ttl, storage)
	session := r.Session
	if len(early) > 0 {
		if err := session.SetMap(early); err != nil {
			g.Log().Warningf(ctx, "gfsession: Middleware: keeping what was written to the session before it ran failed: %v", err)
		}
	}

	r.Middleware.Next()

	if r.Session != session {
		// Replaced by the handler: ghttp closes that one; only the ids
		// Regenerate replaced are left to delete.
		if err := storage.removeReplaced(ctx); err != nil {
			g.Log().Errorf(ctx, "gfsession: Middleware: deleting the session's replaced id failed: %v", err)
		}
		return
	}
	closeBeforeResponse(r, ttl, storage)
}

// loadSession loads session `id` from `storage` and reports whether the
// storage holds it. A storage that keeps the data outside the map
// GetSession returns (an empty map, as gf's StorageRedisHashTable, or
// gsession.ErrorDisabled, as a storage built on gsession.StorageBase) is
// asked for the session's size instead. A storage that can answer neither
// cannot tell: the id is taken as known, as gf's Session does, and a warning
// is logged once. Any other error is returned as is: the storage could not
// be asked.
func loadSession(ctx context.Context, storage gsession.Storage, id string, ttl time.Duration) (data *gmap.StrAnyMap, known bool, err error) {
	data, err = storage.GetSession(ctx, id, ttl)
	switch {
	case gerror.Is(err, gsession.ErrorDisabled):
		data = nil
	case err != nil:
		return nil, false, err
	case data == nil:
		return nil, false, nil
	case data.Size() > 0:
		return data, true, nil
	}
	size, sizeErr := storage.GetSize(ctx, id)
	switch {
	case sizeErr == nil:
		return data, size > 0, nil
	case !gerror.Is(sizeErr, gsession.ErrorDisabled):
		return nil, false, sizeErr
	case data != nil:
		// An empty map and no size: an empty session is no session.
		return nil, false, nil
	}
	logOnce(&cannotCheck, "gfsession: Middleware: the session storage implements neither GetSession nor GetSize; ids are not checked")
	return nil, true, nil
}

// checkStartedSession checks the session an earlier middleware or hook
// started, and reports whether Middleware goes on with a fresh session in
// its place. It does when the session uses the id the client sent and the
// storage does not hold it (the id was never issued, or expired): the
// earlier reader saw an empty session, and nothing is written under the
// client's id. A session the storage holds, or with an id the client did
// not send, is left to ghttp: it runs the rest of the chain with it. When
// the storage cannot be asked, the request fails with 500.
func checkStartedSession(r *ghttp.Request, storage gsession.Storage, ttl time.Duration) bool {
	ctx := r.Context()
	id, err := r.Session.Id()
	if err != nil || id == "" || id != r.GetSessionId() {
		logOnce(&startedEarly, "gfsession: Middleware: the session was started before it ran (by an earlier middleware or hook); register gfsession.Middleware first, or sessions are written after the response")
		r.Middleware.Next()
		return false
	}
	if !IsValidSessionId(id) {
		return true
	}
	_, known, err := loadSession(ctx, storage, id, ttl)
	switch {
	case err != nil:
		g.Log().Errorf(ctx, "gfsession: Middleware: checking session %q, started before the middleware, failed: %v", shortId(id), err)
		r.Session = closedSession(ctx, ttl, err)
		r.Cookie = nil
		r.Cookie = ghttp.GetCookie(r)
		r.Response.ClearBuffer()
		r.Response.Header().Set("Cache-Control", "no-store")
		r.Response.WriteStatus(http.StatusInternalServerError)
		return false
	case known:
		logOnce(&startedEarly, "gfsession: Middleware: the session was started before it ran (by an earlier middleware or hook); register gfsession.Middleware first, or sessions are written after the response")
		r.Middleware.Next()
		return false
	}
	return true
}

// newRequestSession returns an unstarted session on `storage`, with the id
// `storage` loaded, if any.
func newRequestSession(ctx context.Context, ttl time.Duration, storage *requestStorage) *gsession.Session {
	session := gsession.New(ttl, storage).New(ctx, storage.id)
	// SetIdFunc fails only on a started session.
	_ = session.SetIdFunc(newIdFunc)
	return session
}

// closeBeforeResponse closes the request's session (writes it, or refreshes
// its TTL), as ghttp would after the response, deletes the ids Regenerate
// replaced, and turns a failure into an error response.
func closeBeforeResponse(r *ghttp.Request, ttl time.Duration, storage *requestStorage) {
	ctx := r.Context()
	err := storage.closeSession(ctx, r)
	storage.refreshUnused(ctx, ttl)
	if err == nil {
		return
	}
	if !storage.writing {
		// Only the TTL refresh of a session the request did not change
		// failed: the request stored nothing, and ghttp would only log it.
		g.Log().Warningf(ctx, "gfsession: Middleware: refreshing the session's TTL failed: %v", err)
		return
	}
	failUnstored(ctx, r, ttl, err)
}

// closeSession closes the request's session `r`.Session as Middleware (see
// requestStorage.closing) and, once it is stored, deletes the ids Regenerate
// replaced. A failure to delete those counts as a failed write.
func (s *requestStorage) closeSession(ctx context.Context, r *ghttp.Request) error {
	s.closing = true
	err := r.Session.Close()
	s.closing = false
	if err == nil {
		warnInvalidId(r)
		// Only once the new id is stored may the old one go: else the
		// client, which keeps its cookie, would lose its session.
		if err = s.removeReplaced(ctx); err != nil {
			// A live old id after a change of privileges is what
			// Regenerate is there to prevent: the change is not
			// acknowledged.
			s.writing = true
		}
	}
	return err
}

// refreshUnused restarts, at `ttl`, the TTL of the session Middleware loaded
// when the request did not use it, as closing a session that was only read
// would. A failure is logged: the request stored nothing.
func (s *requestStorage) refreshUnused(ctx context.Context, ttl time.Duration) {
	if !s.unused {
		return
	}
	// The loaded session was not used (the handler did not touch the
	// session, or chose another id).
	s.unused = false
	if ttlErr := s.Storage.UpdateTTL(ctx, s.id, ttl); ttlErr != nil && !gerror.Is(ttlErr, gsession.ErrorDisabled) {
		g.Log().Warningf(ctx, "gfsession: Middleware: refreshing the session's TTL failed: %v", ttlErr)
	}
	if s.stored == "" {
		// A hook that only reads it later does not refresh it again.
		s.stored = s.id
	}
}

// failUnstored handles request `r`, whose session could not be stored
// (`err`): nothing of it is stored, so the client keeps its cookie; ghttp
// neither sends a new one nor writes again, and nothing later in the
// request (hooks) can use the session. A response not sent yet becomes an
// error response (see errorResponse); one already sent is only logged.
func failUnstored(ctx context.Context, r *ghttp.Request, ttl time.Duration, err error) {
	r.Session = closedSession(ctx, ttl, err)
	r.Cookie = nil
	r.Cookie = ghttp.GetCookie(r) // the handler's cookies belong to what failed
	res := r.Response
	if res.IsHeaderWrote() || res.IsHijacked() {
		g.Log().Errorf(ctx, "gfsession: Middleware: storing the session failed after the response was sent: %v", err)
		return
	}
	g.Log().Stack(false).Errorf(ctx, "gfsession: Middleware: storing the session failed, answering with an error: %v", err)
	if res.Status >= http.StatusBadRequest {
		res.Header().Set("Cache-Control", "no-store")
		return
	}
	status := http.StatusServiceUnavailable
	if gerror.Code(err) == gcode.CodeInvalidParameter {
		status = http.StatusInternalServerError
	}
	errorResponse(res, status)
}

// errorResponse replaces what the handler put in `res` with an empty,
// uncacheable response of `status`: no body, and none of the handler's
// Content-*, Location, Refresh, Set-Cookie or caching headers.
func errorResponse(res *ghttp.Response, status int) {
	res.ClearBuffer()
	header := res.Header()
	for name := range header {
		if strings.HasPrefix(name, "Content-") {
			header.Del(name)
		}
	}
	for _, name := range []string{"Location", "Refresh", "Set-Cookie", "Etag", "Last-Modified", "Expires"} {
		header.Del(name)
	}
	header.Set("Cache-Control", "no-store")
	header.Set("Content-Type", "text/plain; charset=utf-8")
	res.WriteStatus(status)
}

// warnInvalidId logs a warning when the request's session was written under
// an id the next request cannot use (the handler's SetIdFunc or SetId chose
// one outside IsValidSessionId): Middleware drops such an id unread.
func warnInvalidId(r *ghttp.Request) {
	if !r.Session.IsDirty() {
		return
	}
	if id, err := r.Session.Id(); err == nil && !IsValidSessionId(id) {
		g.Log().Warningf(r.Context(), "gfsession: Middleware: the session was stored under an id that IsValidSessionId refuses (%q); the next request drops it, as it does an unknown id", shortId(id))
	}
}

func newIdFunc(time.Duration) string { return NewSessionId() }

// requestStorage is the storage of one request's session behind Middleware.
// It passes every call to the server's storage, except that
//
//   - the load Middleware made is handed to the session instead of loading
//     again, and a load that failed fails again without a storage call;
//   - the old id Regenerate replaces is deleted only after the session is
//     stored under its new id;
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
	unused  bool            // the session of `id` was loaded, and not used since

	regenerating bool     // Regenerate is running
	replaced     []string // the ids Regenerate replaced, to delete once the new one is stored

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
		s.unused = false
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

// removeReplaced deletes the ids Regenerate replaced.
func (s *requestStorage) removeReplaced(ctx context.Context) error {
	for len(s.replaced) > 0 {
		id := s.replaced[0]
		if err := s.Storage.RemoveAll(ctx, id); err != nil && !gerror.Is(err, gsession.ErrorDisabled) {
			return gerror.WrapCodef(gerror.Code(err), err, `deleting session "%s", replaced by Regenerate, failed`, shortId(id))
		}
		s.replaced = s.replaced[1:]
	}
	return nil
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

// RemoveAll deletes the session, except when Regenerate replaces its id:
// then the old id is deleted once the session is stored under the new one.
func (s *requestStorage) RemoveAll(ctx context.Context, id string) error {
	s.stored = ""
	if s.regenerating {
		s.replaced = append(s.replaced, id)
		return nil
	}
	return s.Storage.RemoveAll(ctx, id)
}

// closedSession returns the session a request keeps after its session could
// not be stored: every use of it fails with `err`, so that nothing later in
// the request (a hook) writes a session or makes ghttp send a session cookie.
func closedSession(ctx context.Context, ttl time.Duration, err error) *gsession.Session {
	err = gerror.WrapCode(gcode.CodeInvalidOperation, err, "the session of this request could not be stored and cannot be used")
	// Without an id function, the session asks the storage for an id.
	return gsession.New(ttl, closedStorage{err: err}).New(ctx)
}

// closedStorage fails every call with its error.
type closedStorage struct{ err error }

func (c closedStorage) New(context.Context, time.Duration) (string, error)     { return "", c.err }
func (c closedStorage) Get(context.Context, string, string) (any, error)       { return nil, c.err }
func (c closedStorage) GetSize(context.Context, string) (int, error)           { return 0, c.err }
func (c closedStorage) Data(context.Context, string) (map[string]any, error)   { return nil, c.err }
func (c closedStorage) Remove(context.Context, string, string) error           { return c.err }
func (c closedStorage) RemoveAll(context.Context, string) error                { return c.err }
func (c closedStorage) UpdateTTL(context.Context, string, time.Duration) error { return c.err }
func (c closedStorage) Set(context.Context, string, string, any, time.Duration) error {
	return c.err
}
func (c closedStorage) SetMap(context.Context, string, map[string]any, time.Duration) error {
	return c.err
}
func (c closedStorage) GetSession(context.Context, string, time.Duration) (*gmap.StrAnyMap, error) {
	return nil, c.err
}
func (c closedStorage) SetSession(context.Context, string, *gmap.StrAnyMap, time.Duration) error {
	return c.err
}

// sessionManager returns the manager (the storage and the TTL) of the
// request's session `s`, which Middleware needs to load the session without
// starting it: neither ghttp.Server nor gsession.Session has a getter for
// it, so it is read from Session's field, which gf has kept since v2.0. It
// returns false, after logging why once, when the field is not there or
// not where reflect says (a gf release that changed Session).
func sessionManager(s *gsession.Session) (*gsession.Manager, bool) {
	if !managerField.ok {
		logOnce(&layoutChanged, "gfsession: Middleware: this gf release's gsession.Session has no manager field; ids are not checked and sessions are written after the response")
		return nil, false
	}
	m := readManager(s, managerField.offset)
	return m, m != nil && m.GetStorage() != nil
}

func readManager(s *gsession.Session, offset uintptr) *gsession.Manager {
	return *(**gsession.Manager)(unsafe.Add(unsafe.Pointer(s), offset))
}

// managerField is where gsession.Session keeps its *gsession.Manager,
// checked on a session of a manager built for the purpose.
var managerField = func() (f struct {
	offset uintptr
	ok     bool
}) {
	offset, ok := fieldOffset(reflect.TypeOf(gsession.Session{}), "manager", reflect.TypeOf((*gsession.Manager)(nil)))
	if !ok {
		return f
	}
	m := gsession.New(time.Minute, &gsession.StorageBase{})
	if readManager(m.New(context.Background()), offset) != m {
		return f
	}
	f.offset, f.ok = offset, true
	return f
}()

// fieldOffset returns the offset of the field `name` of struct type `t`,
// which must be of type `ft` and declared in `t` itself: the offset of a
// field promoted from an embedded struct is relative to that struct.
func fieldOffset(t reflect.Type, name string, ft reflect.Type) (uintptr, bool) {
	sf, ok := t.FieldByName(name)
	if !ok || len(sf.Index) != 1 || sf.Type != ft {
		return 0, false
	}
	return sf.Offset, true
}

// startedEarly, layoutChanged and cannotCheck log once why Middleware
// cannot check ids or store before the response.
var startedEarly, layoutChanged, cannotCheck sync.Once

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
//
// Behind Middleware, the old id is deleted only after the session is stored
// under the new one, before the response: when that write fails, the client
// keeps its old id and its session (the response is an error, see
// Middleware); when the delete fails, the response is an error too, and the
// new id is not sent, since the old one would stay valid after the change.
// Without Middleware, the old id is deleted at once, as by
// gsession.Session.RegenerateId(true).
func Regenerate(r *ghttp.Request) (newId string, err error) {
	if managerField.ok {
		if m := readManager(r.Session, managerField.offset); m != nil {
			if storage, ok := m.GetStorage().(*requestStorage); ok {
				storage.regenerating = true
				defer func() { storage.regenerating = false }()
			}
		}
	}
	return r.Session.RegenerateId(true)
}
