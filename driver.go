package gfsession

import (
	"context"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

// sessionDriver is the backend half of a storage that stores each session
// whole, as one sealed envelope (file, redis, db): the few operations that
// differ from backend to backend. Everything a write means (id validation,
// what the request loaded, an empty session, the lifetime cap, the user
// index's order, a session deleted while the request ran, logging) is
// sessionWriter's, once, over any driver.
type sessionDriver interface {
	// put stores `w.blob` as session `w.id` with an idle TTL of `w.ttl`,
	// if `w.match` holds, and reports whether it stored: false means the
	// session the request loaded was deleted or replaced since, and nothing
	// was written. When `w.user` is set, the user's index lists the session
	// once put returns true (see indexUser).
	put(ctx context.Context, w *sessionWrite) (bool, error)
	// remove deletes session `id`. A missing session is not an error.
	remove(ctx context.Context, id string) error
	// holds reports whether session `l.id` is still the session loaded as
	// `l`: by its creation time, or where the format has none (gf's) by its
	// existence. The writer asks before a write
	// carried over from it by RegenerateId.
	holds(ctx context.Context, l *loaded) (bool, error)
	// indexUser adds session `id` to the index of `user`. The writer calls
	// it before a write that names a user the session did not name as
	// loaded (a login), so that no session is stored under a user without
	// its entry; put confirms the entry after the write itself, whoever
	// removed it in between. A driver whose index is part of the stored
	// session (db's user column), or whose put indexes in the same atomic
	// step, does nothing here.
	//
	// No write removes an entry: one removed after a logout could race a
	// request that logs the same user back in on the session, leaving it
	// unlisted. Entries a session no longer answers to are dropped by
	// DestroyUser and the cleaner, which check the session first.
	indexUser(ctx context.Context, user, id string) error
}

// match is the condition a write of a session puts on what is stored.
type match uint8

const (
	// matchNone: a new session, written whatever is stored under the id.
	matchNone match = iota
	// matchExists: a session loaded in a format without a creation time
	// (gf's): written only while it exists.
	matchExists
	// matchCreated: a session loaded: written only while the stored
	// session is the one loaded, by its creation time.
	matchCreated
)

// sessionWrite is one whole-session write, as sessionWriter hands it to a
// driver.
type sessionWrite struct {
	id      string
	blob    []byte        // the envelope
	created time.Time     // the creation time the envelope holds
	ttl     time.Duration // the idle TTL, capped by what is left of MaxLifetime
	match   match
	loaded  loaded // what the request loaded, for matchExists and matchCreated
	user    string // the user the session names, "" for none
}

// sessionWriter is the write path of the storages that store a session whole:
// SetSession and RemoveAll over a sessionDriver, and the tracking of loads
// for GetSession. docs/design.md ("The write path") is its contract.
type sessionWriter struct {
	backend     string // the storage type, for messages
	tracker     *loadTracker
	env         *envelope
	driver      sessionDriver
	userKey     string
	maxLifetime time.Duration
	maxBlob     int64         // the largest envelope put may write; 0: no limit
	maxBlobKey  string        // the config key that sets maxBlob, for messages
	limit       *sessionLimit // maxSessionsPerUser; nil for none
	clientInfo  bool          // keep the request's client info (ClientInfo)
	stampWrites bool          // keep the time of each write (sessionMeta.written)
}

// loaded returns `data`, just loaded from session `id` created at
// `created`, as the map GetSession hands out, tracked for the write that
// may follow.
func (w *sessionWriter) loaded(id string, created time.Time, data map[string]any) *gmap.StrAnyMap {
	return w.tracker.handOut(data, loaded{id: id, created: created, user: userOf(data, w.userKey)})
}

// setSession stores `m` as session `id` with an idle TTL of `ttl`, starting
// from what the request loaded (see loadTracker.resolve):
//   - an empty map deletes the session, as RemoveAll;
//   - the creation time of a session loaded, or replaced by RegenerateId, is
//     kept, and the TTL is capped by what is left of MaxLifetime; a session
//     past it is not written;
//   - a session loaded is written only while it is still stored (by its
//     creation time): one deleted or replaced while the request ran stays
//     so, and the write is dropped and logged;
//   - with a userKey, a login is indexed before the write and the entry is
//     confirmed by the write; the entry of a user the session no longer
//     names is left to DestroyUser and the cleaner (see sessionDriver).
//
// `id` names the session as the driver stores it (its handle); the
// storage's SetSession has checked the id and the map (checkWrite).
func (w *sessionWriter) setSession(ctx context.Context, id string, m *gmap.StrAnyMap, ttl time.Duration) error {
	r := w.tracker.resolve(ctx, m, id)
	data := m.Map()
	if len(data) == 0 {
		return w.removeAll(ctx, id)
	}
	sw := &sessionWrite{id: id, created: r.keptCreated(), user: userOf(data, w.userKey), loaded: r.loaded}
	now := time.Now()
	if sw.created.IsZero() {
		sw.created = time.UnixMilli(now.UnixMilli()) // as the envelope stores it
	}
	if sw.ttl = lifetimeLeft(sw.created, w.maxLifetime, ttl, now); sw.ttl <= 0 {
		// Out of lifetime during this request: not written, now or by a
		// further write of this map. What is stored under the id is left
		// alone: the session loaded reads as none from now on and expires
		// with its TTL (capped at the same instant), while a new session
		// another request made under the id since must not be deleted.
		w.tracker.lose(r.ref, id)
		return nil
	}
	if r.kind == loadSame {
		sw.match = matchCreated
		if r.created.IsZero() || r.existsOnly {
			sw.match = matchExists
		}
	}
	var err error
	if sw.blob, err = w.encode(id, sw.created, data, w.meta(ctx, now)); err != nil {
		return err
	}
	if ok, err := w.tracker.mayWrite(ctx, w.backend, &r, id, w.holds); !ok {
		return err
	}
	login := sw.user != "" && (r.kind != loadSame || sw.user != r.user)
	if login {
		// A login (after this request's RemoveAll too, whose session may
		// have lost its entry to DestroyUser or the cleaner since): listed
		// before it is stored.
		if err = w.driver.indexUser(ctx, sw.user, id); err != nil {
			return err
		}
	}
	stored, err := w.driver.put(ctx, sw)
	if err != nil {
		return err
	}
	if !stored {
		logStaleWrite(ctx, w.backend, id)
		return nil
	}
	w.tracker.retrack(r.ref, loaded{id: id, created: sw.created, user: sw.user, existsOnly: sw.match == matchExists})
	if login && r.newLogin(sw.user) {
		w.limit.apply(ctx, sw.user)
	}
	return nil
}

// meta returns what the envelope of a write at `now` by the request of
// `ctx` keeps besides the data (see sessionMeta).
func (w *sessionWriter) meta(ctx context.Context, now time.Time) sessionMeta {
	var meta sessionMeta
	if w.clientInfo {
		meta.client = clientInfo(ctx)
	}
	if w.stampWrites {
		meta.written = now
	}
	return meta
}

// holds is the driver's holds, for a map whose writes check only that the
// session exists (loaded.existsOnly) by existence.
func (w *sessionWriter) holds(ctx context.Context, l *loaded) (bool, error) {
	if l.existsOnly {
		c := *l
		c.created = time.Time{}
		l = &c
	}
	return w.driver.holds(ctx, l)
}

// encode returns the envelope of session `id`, created at `created`, holding
// `data`, or an error if it cannot be encoded or is larger than maxBlob:
// never write what could not be read back.
func (w *sessionWriter) encode(id string, created time.Time, data map[string]any, meta sessionMeta) ([]byte, error) {
	blob, err := w.env.encodeSessionMeta(id, created, data, meta)
	if err != nil {
		return nil, gerror.Wrapf(err, `gfsession: %s storage: session %q`, w.backend, shortId(id))
	}
	if w.maxBlob > 0 && int64(len(blob)) > w.maxBlob {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter,
			`gfsession: %s storage: session %q is %d bytes encoded, more than %s (%d bytes): not written`,
			w.backend, shortId(id), len(blob), w.maxBlobKey, w.maxBlob)
	}
	return blob, nil
}

// removeAll deletes session `id` and records that this request did (see
// loadTracker.removed). A missing session or an invalid id is not an error;
// an invalid id touches nothing.
func (w *sessionWriter) removeAll(ctx context.Context, id string) error {
	if !IsValidSessionId(id) {
		return nil
	}
	if err := w.driver.remove(ctx, id); err != nil {
		return err
	}
	w.tracker.removed(ctx, id)
	return nil
}

// checkWrite returns the error of a SetSession of `m` as session `id` by a
// storage of type `backend` that must send nothing: an invalid id, or nil
// data (CodeInvalidParameter). Every SetSession runs it on the id it is
// given, before it turns the id into the session's handle.
func checkWrite(backend, id string, m *gmap.StrAnyMap) error {
	if !IsValidSessionId(id) {
		return errInvalidId(id)
	}
	if m == nil {
		return gerror.NewCodef(gcode.CodeInvalidParameter, `gfsession: %s storage: session %q: session data is nil`, backend, shortId(Handle(id)))
	}
	return nil
}
