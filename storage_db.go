package gfsession

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
)

const (
	// DefaultDBTable is the table StorageDB uses when DBConfig.Table is empty.
	DefaultDBTable = "gf_sessions"
	// DefaultDBCleanupInterval is how often StorageDB deletes expired rows
	// when DBConfig.CleanupInterval is 0.
	DefaultDBCleanupInterval = 5 * time.Minute
	// DefaultDBCleanupBatch is how many expired rows one DELETE statement of
	// the cleaner removes at most when DBConfig.CleanupBatch is 0.
	DefaultDBCleanupBatch = 1000
	// DefaultDBTimeout bounds every statement of StorageDB when
	// DBConfig.Timeout is 0.
	DefaultDBTimeout = 5 * time.Second
	// DefaultDBMaxConns is how many statements StorageDB runs at once when
	// DBConfig.MaxConns is 0.
	DefaultDBMaxConns = 64
	// DefaultDBSQLiteBusyTimeout is the busy timeout StorageDB adds to a
	// SQLite `link` of its config map that sets none: how long a write waits
	// for another connection's (or process's) write lock.
	DefaultDBSQLiteBusyTimeout = 5 * time.Second

	// dbTouchCacheMax bounds the memory of the TouchInterval bookkeeping.
	dbTouchCacheMax = 100_000
	// dbMaxTableName keeps "<table>_expires_at" within PostgreSQL's 63-byte
	// identifier limit.
	dbMaxTableName = 52
	// dbRangePage is how many ids one statement of Range reads.
	dbRangePage = 500
	// dbMaxUserId is the size of the user_id column.
	dbMaxUserId = 255
)

// DBConfig configures StorageDB. The zero value is ready to use.
//
// The storage keeps one row per session in one table:
//
//	id          VARCHAR(128) primary key (case-sensitive)
//	data        the stored session (gfsession's envelope: codec, optional
//	            AES-256-GCM sealing, creation time)
//	expires_at  BIGINT, Unix milliseconds, indexed
//	created_at  BIGINT, Unix milliseconds
//	user_id     the value of the UserKey session key (NULL without one),
//	            indexed, for Admin's DestroyUser ("log out everywhere")
//
// With CreateTable (the default) the storage creates the table and its index
// if they do not exist, with this DDL per dialect (`gf_sessions` being the
// table name):
//
// MySQL / MariaDB:
//
//	CREATE TABLE IF NOT EXISTS `gf_sessions` (
//	  `id`         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
//	  `data`       LONGBLOB NOT NULL,
//	  `expires_at` BIGINT NOT NULL,
//	  `created_at` BIGINT NOT NULL,
//	  `user_id`    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
//	  PRIMARY KEY (`id`),
//	  KEY `gf_sessions_expires_at` (`expires_at`),
//	  KEY `gf_sessions_user_id` (`user_id`)
//	) ENGINE=InnoDB
//
// PostgreSQL:
//
//	CREATE TABLE IF NOT EXISTS "gf_sessions" (
//	  "id"         VARCHAR(128) NOT NULL PRIMARY KEY,
//	  "data"       BYTEA NOT NULL,
//	  "expires_at" BIGINT NOT NULL,
//	  "created_at" BIGINT NOT NULL,
//	  "user_id"    VARCHAR(255) NULL
//	);
//	CREATE INDEX IF NOT EXISTS "gf_sessions_expires_at" ON "gf_sessions" ("expires_at");
//	CREATE INDEX IF NOT EXISTS "gf_sessions_user_id" ON "gf_sessions" ("user_id");
//
// SQLite:
//
//	CREATE TABLE IF NOT EXISTS "gf_sessions" (
//	  "id"         VARCHAR(128) NOT NULL PRIMARY KEY,
//	  "data"       BLOB NOT NULL,
//	  "expires_at" BIGINT NOT NULL,
//	  "created_at" BIGINT NOT NULL,
//	  "user_id"    VARCHAR(255) NULL
//	);
//	CREATE INDEX IF NOT EXISTS "gf_sessions_expires_at" ON "gf_sessions" ("expires_at");
//	CREATE INDEX IF NOT EXISTS "gf_sessions_user_id" ON "gf_sessions" ("user_id");
//
// The id and user_id columns must compare case-sensitively (MySQL: a
// binary collation), since session ids are mixed-case. A user id longer than
// 255 bytes, not UTF-8, or ending with a space is stored as "sha256:" and
// its hex SHA-256.
type DBConfig struct {
	// Table is the table holding the sessions, DefaultDBTable if empty. It
	// must be a plain identifier: a letter or '_' followed by up to 51
	// letters, digits or '_'. gdb's table prefix is not applied.
	Table string `json:"table"`
	// CreateTable tells whether the storage creates the table and its index
	// when they do not exist. nil means true. Set it to a pointer to false
	// (config map: `createTable: false`) when the table is managed by
	// migrations and the database user may not run DDL.
	CreateTable *bool `json:"createTable"`
	// MaxLifetime is the absolute lifetime of a session since its creation,
	// however active it is. 0 means none: only the idle TTL applies.
	MaxLifetime time.Duration `json:"maxLifetime"`
	// CryptoKeys seal stored sessions with AES-256-GCM: 32-byte keys, the
	// first seals, all open (config map: a list of base64 strings).
	CryptoKeys [][]byte `json:"cryptoKeys"`
	// Codec is the value encoding, CodecBinary (default) or CodecJSON.
	Codec string `json:"codec"`
	// CleanupInterval is how often the cleaner deletes expired rows (they are
	// never served after expiry either way). 0 means
	// DefaultDBCleanupInterval; a negative value (config map: "off", in any
	// case, or a negative duration such as "-1s") disables the cleaner, e.g.
	// on all but one instance, or where Cleanup is run by a job.
	CleanupInterval time.Duration `json:"cleanupInterval" config:"negative"`
	// CleanupBatch is the most rows one DELETE of the cleaner removes; the
	// cleaner repeats it until a batch removes fewer. 0 means
	// DefaultDBCleanupBatch; so does a negative value in code (a config map
	// refuses one).
	CleanupBatch int `json:"cleanupBatch"`
	// TouchInterval limits the idle refresh of read-only requests: the
	// expiry column is written at most once per TouchInterval for a session
	// (its expiry then slides in steps of TouchInterval). 0 means on every
	// read-only request. A value of a few percent of the TTL saves most of
	// those writes; it is capped at half the TTL, so that an active session
	// never expires.
	TouchInterval time.Duration `json:"touchInterval"`
	// UserKey is the session key holding the user id, for DestroyUser ("log
	// out everywhere"): its value is kept in the user_id column on every
	// write. Empty means none; DestroyUser then fails.
	UserKey string `json:"userKey"`
	// MaxSessionsPerUser bounds the live sessions of one user (by UserKey,
	// which it needs): when a write makes a session belong to a user who
	// then has more, the least recently active ones are destroyed. 1 is
	// "one login per account". 0 means no bound; a negative value, or one
	// without UserKey, is an error.
	MaxSessionsPerUser int `json:"maxSessionsPerUser"`
	// ClientInfo keeps with each session the client IP and User-Agent of
	// the request that created or last wrote it (from the ghttp request in
	// the context), for Admin.Sessions. Off by default: it is personal
	// data. Sealed with the session when CryptoKeys are set.
	ClientInfo bool `json:"clientInfo"`
	// Timeout bounds each statement (on top of the request's context), so
	// that a database that stops answering fails requests instead of hanging
	// them, whatever the driver does with the context. 0 means
	// DefaultDBTimeout; a negative value (config map: "off", in any case, or
	// a negative duration) means no bound.
	//
	// The wait for a turn (see MaxConns) counts in the Timeout.
	//
	// On MySQL and PostgreSQL with a positive Timeout, when a statement on
	// one session itself runs for at least half of its Timeout and gets no
	// answer, every statement fails at once for the next Timeout, so that
	// a request waits for a dead database at most about one Timeout, and
	// the idle connections of the pool are closed (after a failover they
	// would go silent one by one). Then one statement is let through, even
	// when every turn is taken; the first that gets an answer closes the
	// breaker, and the storage works again by itself. Waiting for a turn
	// never opens the breaker.
	Timeout time.Duration `json:"timeout" config:"negative"`
	// MaxConns is the most statements the storage runs at once, and so the
	// most connections of the pool it holds; a further statement waits for
	// its turn within Timeout. A statement the database does not answer
	// within its Timeout gives its turn up to a budget of another MaxConns
	// statements left running until their connection ends (a failover can
	// leave them waiting on a silent socket for minutes); when that budget
	// is full, it keeps its turn. So an outage costs at most 2*MaxConns+1
	// statements (the breaker's probe included), each with its connection
	// and, on PostgreSQL, a cancel connection. 0 means DefaultDBMaxConns; a
	// negative value is an error.
	MaxConns int `json:"maxConns"`
}

// StorageDB keeps sessions in a SQL table through gf's gdb: MySQL/MariaDB,
// PostgreSQL or SQLite, with gf's driver for it blank-imported by the
// application, e.g.
//
//	import _ "github.com/gogf/gf/contrib/drivers/mysql/v2"
//
// Per request it costs one indexed read (by primary key) and at most one
// write: a writing request upserts the whole session in one statement
// (INSERT ... ON DUPLICATE KEY UPDATE / ON CONFLICT DO UPDATE), a read-only
// request updates only the expiry column (at most once per
// DBConfig.TouchInterval), and a request that empties its session deletes
// the row.
//
// Concurrent writing requests of one session are last-writer-wins per
// session: each writes the whole session as it saw it, so the keys a
// concurrent request set in between may be lost. Requests of one session
// rarely write at the same time; where they do, use a storage that merges
// per key (memory, redis-hash).
//
// Expired rows are never served, and deleted in bounded batches by a cleaner
// goroutine (see DBConfig.CleanupInterval) that stops on Close.
//
// A database that stops answering fails requests within about one
// DBConfig.Timeout each, and costs at most 2*DBConfig.MaxConns+1 statements
// (with their connections and goroutines) however many requests come; the
// storage works again by itself once the database answers (see
// DBConfig.Timeout).
//
// SQLite has one write lock per database: the storage's writes take turns
// in arrival order, and the database should use the WAL journal (readers
// then never wait for a writer) and a busy timeout (for writers of other
// connections or processes). A config map `link` gets both unless it sets
// them ("?journal_mode=WAL&busy_timeout=5000"); for a gdb.DB without them
// NewStorageDB logs a warning that says what to add to its link.
type StorageDB struct {
	gsession.StorageBase
	db      gdb.DB
	ownsDB  bool // made by the config factory (a `link`, a config file group): closed by Close
	config  DBConfig
	dialect dbDialect
	table   string // validated, unquoted
	env     *envelope
	tracker loadTracker
	w       sessionWriter
	touches *dbTouches // nil without TouchInterval
	ttl     ttlSeen    // for Sessions
	guard   *dbGuard

	// tableReady is set once the table is known to exist (or is not the
	// storage's to create); until then every statement first tries to
	// create it, one at a time under tableMu.
	tableReady atomic.Bool
	tableMu    sync.Mutex
	// startPinged is set when NewStorageDB pinged the database (to create
	// the table), and startPingErr is what that ping returned: the config
	// hook's start-up check reports it instead of pinging again.
	startPinged  bool
	startPingErr error

	sqlSelect, sqlHolds, sqlUpsert, sqlUpdate, sqlReseal, sqlDelete, sqlTouch, sqlCleanup              string
	sqlCount, sqlRange, sqlDestroyUser, sqlDestroyUserExcept, sqlUserSessions, sqlUsers, sqlCountUsers string

	cleaner background
	closed  sync.Once
}

// dbDialects maps gdb driver type names to dialects, and the import path of
// gf's driver for each.
var dbDialects = map[string]struct {
	dialect dbDialect
	driver  string
}{
	"mysql":   {dialectMySQL, "github.com/gogf/gf/contrib/drivers/mysql/v2"},
	"mariadb": {dialectMySQL, "github.com/gogf/gf/contrib/drivers/mysql/v2"},
	"pgsql":   {dialectPgSQL, "github.com/gogf/gf/contrib/drivers/pgsql/v2"},
	"sqlite":  {dialectSQLite, "github.com/gogf/gf/contrib/drivers/sqlite/v2"},
}

const dbSupportedTypes = "mysql, mariadb, pgsql, sqlite"

// NewStorageDB creates a storage that keeps sessions in a table of `db` (see
// DBConfig for the table and its DDL). With CreateTable (the default) it
// creates the table if it does not exist: at once when the database answers
// (a DDL error, such as a missing privilege, is returned), or, when the
// database cannot be reached, on the first statement that finds it back (a
// warning is logged and statements fail until then), so that a database
// outage does not stop start-up. With a CleanupInterval > 0 (the default) it starts one goroutine
// that deletes expired rows until Close. `db` stays the caller's: Close does
// not close it.
func NewStorageDB(db gdb.DB, config ...DBConfig) (*StorageDB, error) {
	if db == nil {
		return nil, gerror.NewCodef(gcode.CodeInvalidParameter, "gfsession: %s storage: db is nil", TypeDB)
	}
	s := &StorageDB{db: db}
	if len(config) > 0 {
		s.config = config[0]
	}
	if err := s.config.normalize(); err != nil {
		return nil, err
	}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	if err := s.start(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare sets up what the storage needs before it sends a statement: the
// dialect of its database, its guard, envelope and SQL.
func (s *StorageDB) prepare() error {
	c := &s.config
	dbType := s.db.GetConfig().Type
	d, ok := dbDialects[dbType]
	if !ok {
		return gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`gfsession: %s storage: database type %q is not supported; supported: %s`, TypeDB, dbType, dbSupportedTypes)
	}
	s.dialect = d.dialect
	s.table = c.Table
	s.guard = newDBGuard(s.dialect, c.Timeout, c.MaxConns)
	s.guard.noAnswer = s.closeIdleConns
	var err error
	if s.env, err = newStorageEnvelope(TypeDB, c.Codec, c.CryptoKeys); err != nil {
		return err
	}
	if c.TouchInterval > 0 {
		s.touches = &dbTouches{m: make(map[string]int64)}
	}
	s.buildSQL()
	s.w = sessionWriter{backend: TypeDB, tracker: &s.tracker, env: s.env, driver: dbDriver{s},
		userKey: c.UserKey, maxLifetime: c.MaxLifetime, clientInfo: c.ClientInfo}
	if c.MaxSessionsPerUser > 0 {
		// The expiry column tells a session's last activity but in the last
		// TTL of its MaxLifetime: there the time of its last write tells.
		s.w.stampWrites = c.MaxLifetime > 0
		s.w.limit = &sessionLimit{backend: TypeDB, max: c.MaxSessionsPerUser, list: s.userSessions,
			destroy: func(ctx context.Context, _, handle string) error { return s.DestroyHandle(ctx, handle) }}
	}
	return nil
}

// start creates the table (with CreateTable), checks a SQLite database's
// set-up and starts the cleaner.
func (s *StorageDB) start(ctx context.Context) error {
	if *s.config.CreateTable {
		if err := s.createTableAtStart(ctx); err != nil {
			return err
		}
	} else {
		s.tableReady.Store(true)
	}
	if s.dialect == dialectSQLite {
		s.checkSQLite(ctx)
	}
	s.cleaner.start(s.config.CleanupInterval, func(stop context.Context) {
		// Close stops the cleaner between statements, never during one: a
		// statement cancelled on the client goes on in the database (MySQL
		// runs a DELETE whose connection was dropped to its end), where it
		// would still delete rows after Close returned.
		if _, err := s.cleanup(stop, context.WithoutCancel(stop)); err != nil && stop.Err() == nil {
			g.Log().Warningf(stop, `gfsession: db: cleaner: %v`, err)
		}
	})
	return nil
}

// New returns a new random session id (see NewSessionId).
func (s *StorageDB) New(ctx context.Context, ttl time.Duration) (string, error) {
	return NewSessionId(), nil
}

// GetSession loads the session with one indexed read. It returns nil when
// the session does not exist, has expired (idle TTL or MaxLifetime), holds
// data that cannot be read (logged through gf's logger), or `sessionId` is not
// a valid id; an error only when the database fails. It does not move the
// expiry: gf calls UpdateTTL or SetSession when the request ends.
func (s *StorageDB) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	if !IsValidSessionId(sessionId) {
		return nil, nil
	}
	sessionId = Handle(sessionId) // the row's key; from here on the session's name
	s.ttl.note(ttl)
	now := time.Now()
	rec, err := s.query(ctx, stmtPoint, s.sqlSelect, sessionId, now.UnixMilli())
	if err != nil {
		return nil, gerror.Wrapf(err, `gfsession: db storage: loading session %q from table %s`, shortId(sessionId), s.table)
	}
	if rec.IsEmpty() {
		return nil, nil
	}
	data, created, err := s.env.decodeSession(sessionId, rec["data"].String())
	if err != nil {
		logDropped(ctx, TypeDB, sessionId, err)
		return nil, nil
	}
	if created.IsZero() {
		created = time.UnixMilli(rec["created_at"].Int64()) // a legacy blob
	}
	if lifetimeLeft(created, s.config.MaxLifetime, ttl, now) <= 0 {
		return nil, nil
	}
	if stored := rec["data"].String(); s.env.staleSeal(stored) {
		s.reseal(ctx, sessionId, stored, created, data)
	}
	if s.touches != nil {
		s.touches.put(sessionId, rec["expires_at"].Int64())
	}
	return s.w.loaded(sessionId, created, data), nil
}

// reseal stores session `id`, read as `stored` and sealed with an old key,
// sealed with the first key, once: a session that is only read would keep
// the old key needed for as long as it lives. The row is updated only if
// its data is still what was read, and a failure only logs: the read
// succeeded.
func (s *StorageDB) reseal(ctx context.Context, id, stored string, created time.Time, data map[string]any) {
	_, _, meta, _ := s.env.decodeSessionMeta(id, stored)
	blob, err := s.env.encodeSessionMeta(id, created, data, meta)
	if err == nil {
		_, err = s.exec(ctx, stmtPoint, s.sqlReseal, blob, id, []byte(stored))
	}
	if err != nil {
		g.Log().Warningf(ctx, `gfsession: db: sealing session %q with the new crypto key: %v`, shortId(id), err)
	}
}

// SetSession writes the whole session with one statement (last writer wins
// per session), expiring `ttl` from now but never after MaxLifetime since its
// creation. A session without keys, or past its MaxLifetime, is deleted.
// Nil `sessionData` is an error (CodeInvalidParameter).
//
// It follows the package's write rules (see Writes in the package
// documentation): a session GetSession loaded is only updated, and only
// while the row is still that session (same id and creation time). Any
// other session is upserted.
func (s *StorageDB) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	if err := checkWrite(TypeDB, sessionId, sessionData); err != nil {
		return err
	}
	s.ttl.note(ttl)
	return s.w.setSession(ctx, Handle(sessionId), sessionData, ttl)
}

// dbDriver is the db storage's sessionDriver. The user index is the row's
// user_id column, written with the row.
type dbDriver struct{ s *StorageDB }

// put writes session `w.id`'s row. A conditional write updates the row of
// the session loaded only, by its creation time. Its idle expiry may have
// passed during the request (GetSession does not move it): the user was
// active, the write goes. (MySQL counts changed rows: a write identical to
// the row, down to the millisecond of its expiry, also counts 0 and is
// taken for a stale write, which changes nothing.) Any other write is an
// upsert.
func (d dbDriver) put(ctx context.Context, w *sessionWrite) (bool, error) {
	s := d.s
	if s.touches != nil {
		s.touches.take(w.id)
	}
	var user any // NULL without a user
	if w.user != "" {
		user = dbUserId(w.user)
	}
	expires := time.Now().Add(w.ttl).UnixMilli()
	stored := true
	var err error
	if w.match == matchNone {
		_, err = s.exec(ctx, stmtPoint, s.sqlUpsert, w.id, w.blob, expires, w.created.UnixMilli(), user)
	} else {
		var n int64
		n, err = s.exec(ctx, stmtPoint, s.sqlUpdate, w.blob, expires, user, w.id, w.loaded.created.UnixMilli())
		stored = n > 0
	}
	if err != nil {
		return false, gerror.Wrapf(err, `gfsession: db storage: session %q: writing to table %s`, shortId(w.id), s.table)
	}
	return stored, nil
}

// remove deletes session `id`'s row.
func (d dbDriver) remove(ctx context.Context, id string) error {
	s := d.s
	if s.touches != nil {
		s.touches.take(id)
	}
	if _, err := s.exec(ctx, stmtPoint, s.sqlDelete, id); err != nil {
		return gerror.Wrapf(err, `gfsession: db storage: session %q: deleting from table %s`, shortId(id), s.table)
	}
	return nil
}

// holds reports whether the row of session `l.id` still has the creation
// time loaded.
func (d dbDriver) holds(ctx context.Context, l *loaded) (bool, error) {
	s := d.s
	rec, err := s.query(ctx, stmtPoint, s.sqlHolds, l.id, l.created.UnixMilli())
	if err != nil {
		return false, gerror.Wrapf(err, `gfsession: db storage: session %q: reading table %s`, shortId(l.id), s.table)
	}
	return len(rec) > 0, nil
}

func (dbDriver) indexUser(ctx context.Context, user, id string) error { return nil }

// UpdateTTL restarts the idle TTL of a live session (never beyond
// MaxLifetime) by updating its expiry column only. With TouchInterval it
// writes only when the expiry would move by TouchInterval or more, and skips
// the statement entirely when GetSession of this storage loaded the session
// recently enough. A missing session is not an error.
func (s *StorageDB) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	sessionId = Handle(sessionId) // the row's key; from here on the session's name
	now := time.Now().UnixMilli()
	exp := now + ttl.Milliseconds()
	touch := min(s.config.TouchInterval, ttl/2).Milliseconds()
	if s.touches != nil {
		if loaded, ok := s.touches.take(sessionId); ok && loaded > now && exp-loaded < touch {
			return nil
		}
	}
	args := make([]any, 0, 7)
	if s.config.MaxLifetime > 0 {
		max := s.config.MaxLifetime.Milliseconds()
		args = append(args, max, exp, max, exp)
	} else {
		args = append(args, exp)
	}
	args = append(args, sessionId, now)
	if s.touches != nil {
		args = append(args, exp-touch)
	}
	if _, err := s.exec(ctx, stmtPoint, s.sqlTouch, args...); err != nil {
		return gerror.Wrapf(err, `gfsession: db storage: refreshing session %q in table %s`, shortId(sessionId), s.table)
	}
	return nil
}

// RemoveAll deletes the session's row. A missing session is not an error.
func (s *StorageDB) RemoveAll(ctx context.Context, sessionId string) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	return s.w.removeAll(ctx, Handle(sessionId))
}

// DestroyHandle deletes the session whose handle is `handle` (see Handle),
// as Destroy deletes a session by id. A missing session is not an error.
func (s *StorageDB) DestroyHandle(ctx context.Context, handle string) error {
	if !IsHandle(handle) {
		return nil
	}
	ctx = adminContext(ctx)
	return s.w.removeAll(ctx, handle)
}

// Cleanup deletes the rows that expired before now, in batches of
// CleanupBatch rows, until a batch deletes fewer, and returns how many it
// deleted. The cleaner goroutine runs it every CleanupInterval; call it
// yourself (e.g. from a job on one instance) when the cleaner is disabled.
// It stops early, with the error of `ctx`, when `ctx` is done.
func (s *StorageDB) Cleanup(ctx context.Context) (deleted int64, err error) {
	return s.cleanup(ctx, ctx)
}

// cleanup is Cleanup, stopping before a batch once `stop` is done and
// running each statement under `ctx`.
func (s *StorageDB) cleanup(stop, ctx context.Context) (deleted int64, err error) {
	batch := int64(s.config.CleanupBatch)
	for {
		if err := stop.Err(); err != nil {
			return deleted, err
		}
		began := time.Now()
		n, err := s.exec(ctx, stmtBulk, s.sqlCleanup, began.UnixMilli())
		deleted += n
		if err != nil {
			return deleted, gerror.Wrapf(err, `gfsession: db storage: deleting expired sessions from table %s`, s.table)
		}
		if n < batch {
			return deleted, nil
		}
		// Pause between batches as long as the batch took, so that the
		// cleaner holds the database (and SQLite's single write lock) at
		// most half of the time and requests keep their share.
		pause := min(max(time.Since(began), time.Millisecond), time.Second)
		select {
		case <-stop.Done():
			return deleted, stop.Err()
		case <-ctx.Done():
			return deleted, ctx.Err()
		case <-time.After(pause):
		}
	}
}

var _ Admin = (*StorageDB)(nil)

// Count returns the number of live sessions (rows not yet expired), with one
// COUNT(*) statement.
func (s *StorageDB) Count(ctx context.Context) (int, error) {
	rec, err := s.query(ctx, stmtBulk, s.sqlCount, time.Now().UnixMilli())
	if err != nil {
		return 0, gerror.Wrapf(err, `gfsession: db storage: counting sessions in table %s`, s.table)
	}
	return rec["n"].Int(), nil
}

// Range calls `fn` with the handle of each live session, in handle order,
// until `fn` returns false. It reads the handles in pages by primary key,
// so it never holds more than one page in memory and never keeps a
// statement open while `fn` runs.
func (s *StorageDB) Range(ctx context.Context, fn func(handle string) bool) error {
	return s.pages(ctx, s.sqlRange, "id", "listing sessions", func(rec gdb.Record) bool {
		return fn(rec["id"].String())
	})
}

// pages runs `sql`, a SELECT of dbRangePage rows ordered by `column` and
// taking the last value of `column` read and now (Unix ms), page after page,
// calling `fn` with each row until it returns false or a page is short.
// No statement stays open while `fn` runs. `what` names the work in errors.
func (s *StorageDB) pages(ctx context.Context, sql, column, what string, fn func(rec gdb.Record) bool) error {
	after := ""
	for {
		var (
			page gdb.Result
			err  error
		)
		if err = s.ensureTable(ctx); err == nil {
			page, err = guarded(ctx, s.guard, stmtBulk, func(ctx context.Context) (gdb.Result, error) {
				return s.selectMaster(ctx, sql, after, time.Now().UnixMilli())
			})
		}
		if err != nil {
			return gerror.Wrapf(err, `gfsession: db storage: %s in table %s`, what, s.table)
		}
		for _, rec := range page {
			after = rec[column].String()
			if !fn(rec) {
				return nil
			}
		}
		if len(page) < dbRangePage {
			return nil
		}
	}
}

// Destroy deletes session `sessionId` (as RemoveAll). A missing session is
// not an error.
func (s *StorageDB) Destroy(ctx context.Context, sessionId string) error {
	return s.RemoveAll(adminContext(ctx), sessionId)
}

// DestroyUser deletes every session whose UserKey value equals `userId`
// (compared as strings), with one indexed DELETE, and returns how many rows
// it deleted. Rows past their idle TTL that the cleaner has not deleted yet
// go too, and count: a request that loaded one before the TTL ran out may
// still write it (SetSession). It fails with CodeInvalidOperation without a
// UserKey.
func (s *StorageDB) DestroyUser(ctx context.Context, userId string) (int, error) {
	return s.DestroyUserExcept(ctx, userId, "")
}

// DestroyUserExcept is DestroyUser sparing the row of the session whose
// handle is `keep`, in the same DELETE.
func (s *StorageDB) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	if s.config.UserKey == "" {
		return 0, errNoUserKey("StorageDB")
	}
	if userId == "" {
		return 0, nil
	}
	var (
		n   int64
		err error
	)
	if keep == "" {
		n, err = s.exec(ctx, stmtBulk, s.sqlDestroyUser, dbUserId(userId))
	} else {
		n, err = s.exec(ctx, stmtBulk, s.sqlDestroyUserExcept, dbUserId(userId), keep)
	}
	if err != nil {
		return 0, gerror.Wrapf(err, `gfsession: db storage: deleting the sessions of user %q from table %s`, userId, s.table)
	}
	return int(n), nil
}

// dbUserId returns what the user_id column holds for user `u`: `u` itself,
// or its SHA-256 when it does not fit, is not UTF-8 (which MySQL refuses)
// or ends with a space (which MySQL's PAD SPACE collations ignore when
// comparing: "alice " would be "alice").
func dbUserId(u string) string {
	if len(u) <= dbMaxUserId && utf8.ValidString(u) && !strings.HasSuffix(u, " ") {
		return u
	}
	sum := sha256.Sum256([]byte(u))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Close stops the cleaner and waits for it, and for the statements running
// (at most until `ctx` is done or one DBConfig.Timeout has passed: a
// statement the database stopped answering may run on), so that no
// statement of the cleaner runs after it returns. The cleaner stops between
// its statements, never cancelling one: a database goes on with a statement
// whose client went away. It then closes the
// database when the storage opened it itself (config map `link`). It is
// idempotent; the storage keeps serving sessions after Close when the
// database is the caller's.
func (s *StorageDB) Close(ctx context.Context) error {
	var err error
	s.closed.Do(func() {
		s.cleaner.stop()
		// A statement of the cleaner left running at its cancellation (on
		// a goroutine of its own, see dbGuard) ends too before Close
		// returns, or before the database is closed under it.
		wait := ctx
		if s.config.Timeout > 0 {
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, s.config.Timeout)
			defer cancel()
		}
		_ = s.guard.drain(wait)
		if s.ownsDB {
			err = s.db.Close(ctx)
		}
	})
	return err
}

// dbTouches remembers the expiry each session had when GetSession loaded it,
// so that UpdateTTL can skip refreshes within TouchInterval without a
// statement. It is bounded: when full it starts over, which costs at most one
// extra statement per session.
type dbTouches struct {
	mu sync.Mutex
	m  map[string]int64 // id -> expires_at, Unix ms
}

func (c *dbTouches) put(id string, expires int64) {
	c.mu.Lock()
	if len(c.m) >= dbTouchCacheMax {
		clear(c.m)
	}
	c.m[id] = expires
	c.mu.Unlock()
}

func (c *dbTouches) take(id string) (int64, bool) {
	c.mu.Lock()
	v, ok := c.m[id]
	if ok {
		delete(c.m, id)
	}
	c.mu.Unlock()
	return v, ok
}

// Sessions returns the live sessions of user `userId` (see Admin.Sessions)
// with one indexed SELECT of their keys, creation and expiry times. A
// session's LastActive is its expiry less the idle TTL the storage was last
// called with; the expiry moves at most once per TouchInterval.
func (s *StorageDB) Sessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	list, err := s.userSessions(ctx, userId)
	return finishSessions(ctx, list), err
}

// userSessions is Sessions, unordered and without Current.
func (s *StorageDB) userSessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	if s.config.UserKey == "" {
		return nil, errNoUserKey("StorageDB")
	}
	if userId == "" {
		return nil, nil
	}
	var (
		rows gdb.Result
		err  error
	)
	if err = s.ensureTable(ctx); err == nil {
		rows, err = guarded(ctx, s.guard, stmtBulk, func(ctx context.Context) (gdb.Result, error) {
			return s.selectMaster(ctx, s.sqlUserSessions, dbUserId(userId), time.Now().UnixMilli())
		})
	}
	if err != nil {
		return nil, gerror.Wrapf(err, `gfsession: db storage: listing the sessions of user %q in table %s`, userId, s.table)
	}
	ttl := s.ttl.get()
	list := make([]SessionInfo, 0, len(rows))
	for _, rec := range rows {
		if rec["user_id"].String() != dbUserId(userId) {
			continue // equal only to the collation of the column
		}
		created := time.UnixMilli(rec["created_at"].Int64())
		if lifetimeLeft(created, s.config.MaxLifetime, time.Hour, time.Now()) <= 0 {
			continue
		}
		info := SessionInfo{Handle: rec["id"].String(), Created: created}
		var meta sessionMeta
		if s.config.ClientInfo || s.w.stampWrites {
			_, _, meta, _ = s.env.decodeSessionMeta(info.Handle, rec["data"].String())
			info.ClientIP, info.UserAgent = splitClient(meta.client)
		}
		activity(&info, time.UnixMilli(rec["expires_at"].Int64()), ttl, s.config.MaxLifetime, meta.written)
		list = append(list, info)
	}
	return list, nil
}

// Users calls `fn` with each user that has live sessions, and their number
// (see Admin.Users), in user_id order, reading dbRangePage users per
// statement (an indexed GROUP BY). A user id the user_id column holds as a
// digest (see dbUserId) comes as the column holds it: "sha256:" and its hex
// SHA-256.
func (s *StorageDB) Users(ctx context.Context, fn func(userId string, sessions int) bool) error {
	if s.config.UserKey == "" {
		return errNoUserKey("StorageDB")
	}
	return s.pages(ctx, s.sqlUsers, "user_id", "listing users", func(rec gdb.Record) bool {
		return fn(rec["user_id"].String(), rec["n"].Int())
	})
}

// CountUsers returns the number of users with live sessions, with one
// COUNT(DISTINCT user_id) statement.
func (s *StorageDB) CountUsers(ctx context.Context) (int, error) {
	if s.config.UserKey == "" {
		return 0, errNoUserKey("StorageDB")
	}
	rec, err := s.query(ctx, stmtBulk, s.sqlCountUsers, time.Now().UnixMilli())
	if err != nil {
		return 0, gerror.Wrapf(err, `gfsession: db storage: counting users in table %s`, s.table)
	}
	return rec["n"].Int(), nil
}

// userKeyName returns DBConfig.UserKey.
func (s *StorageDB) userKeyName() string { return s.config.UserKey }
