package gfsession

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"reflect"
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
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
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
// 255 bytes is stored as "sha256:" and its hex SHA-256.
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
	// DefaultDBCleanupInterval; a negative value (config map: "off" or "-1s")
	// disables the cleaner, e.g. on all but one instance, or where Cleanup is
	// run by a job.
	CleanupInterval time.Duration `json:"cleanupInterval" config:"negative"`
	// CleanupBatch is the most rows one DELETE of the cleaner removes; the
	// cleaner repeats it until a batch removes fewer. 0 means
	// DefaultDBCleanupBatch.
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
	// Timeout bounds each statement (on top of the request's context), so
	// that a database that stops answering fails requests instead of hanging
	// them, whatever the driver does with the context. 0 means
	// DefaultDBTimeout; a negative value means no bound.
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
	// and, on PostgreSQL, a cancel connection. 0 means DefaultDBMaxConns.
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
	touches *dbTouches // nil without TouchInterval
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

	sqlSelect, sqlUpsert, sqlUpdate, sqlReseal, sqlDelete, sqlTouch, sqlCleanup string
	sqlCount, sqlRange, sqlDestroyUser                                          string

	cleaner background
	closed  sync.Once
}

// dbDialect is the SQL flavour of a gdb driver type.
type dbDialect int

const (
	dialectMySQL dbDialect = iota + 1
	dialectPgSQL
	dialectSQLite
)

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

func (d dbDialect) quote(name string) string {
	if d == dialectMySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

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
		return nil, gerror.NewCode(gcode.CodeInvalidParameter, "gfsession: NewStorageDB: db is nil")
	}
	s := &StorageDB{db: db}
	if len(config) > 0 {
		s.config = config[0]
	}
	c := &s.config
	if c.Table == "" {
		c.Table = DefaultDBTable
	}
	if !isDBIdentifier(c.Table) {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`table: %q is not a plain table name: use a letter or '_' followed by up to %d letters, digits or '_'`,
			c.Table, dbMaxTableName-1)
	}
	if c.CleanupInterval == 0 {
		c.CleanupInterval = DefaultDBCleanupInterval
	}
	if c.CleanupBatch <= 0 {
		c.CleanupBatch = DefaultDBCleanupBatch
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultDBTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultDBMaxConns
	}
	if c.MaxConns < 0 {
		return nil, gerror.NewCode(gcode.CodeInvalidConfiguration, `maxConns must not be negative`)
	}
	if c.MaxLifetime < 0 || c.TouchInterval < 0 {
		return nil, gerror.NewCode(gcode.CodeInvalidConfiguration, `maxLifetime and touchInterval must not be negative`)
	}
	dbType := db.GetConfig().Type
	d, ok := dbDialects[dbType]
	if !ok {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`gfsession: db: database type %q is not supported; supported: %s`, dbType, dbSupportedTypes)
	}
	s.dialect = d.dialect
	s.table = c.Table
	s.guard = newDBGuard(s.dialect, c.Timeout, c.MaxConns)
	s.guard.noAnswer = s.closeIdleConns
	var err error
	if s.env, err = newEnvelope(c.Codec, c.CryptoKeys); err != nil {
		return nil, err
	}
	if c.TouchInterval > 0 {
		s.touches = &dbTouches{m: make(map[string]int64)}
	}
	s.buildSQL()
	if c.CreateTable == nil || *c.CreateTable {
		if err = s.createTableAtStart(context.Background()); err != nil {
			return nil, err
		}
	} else {
		s.tableReady.Store(true)
	}
	if s.dialect == dialectSQLite {
		s.checkSQLite(context.Background())
	}
	s.cleaner.start(c.CleanupInterval, func(ctx context.Context) {
		if _, err := s.Cleanup(ctx); err != nil && ctx.Err() == nil {
			g.Log().Warningf(ctx, `gfsession: db: cleaner: %v`, err)
		}
	})
	return s, nil
}

// isDBIdentifier reports whether `name` is a plain SQL identifier that needs
// no escaping in any dialect.
func isDBIdentifier(name string) bool {
	if name == "" || len(name) > dbMaxTableName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func (s *StorageDB) buildSQL() {
	q := s.dialect.quote
	t := q(s.table)
	s.sqlSelect = fmt.Sprintf(`SELECT %s, %s, %s FROM %s WHERE %s = ? AND %s > ?`,
		q("data"), q("expires_at"), q("created_at"), t, q("id"), q("expires_at"))
	insert := fmt.Sprintf(`INSERT INTO %s (%s, %s, %s, %s, %s) VALUES (?, ?, ?, ?, ?)`,
		t, q("id"), q("data"), q("expires_at"), q("created_at"), q("user_id"))
	if s.dialect == dialectMySQL {
		s.sqlUpsert = insert + " ON DUPLICATE KEY UPDATE `data` = VALUES(`data`), " +
			"`expires_at` = VALUES(`expires_at`), `created_at` = VALUES(`created_at`), `user_id` = VALUES(`user_id`)"
	} else {
		s.sqlUpsert = insert + ` ON CONFLICT ("id") DO UPDATE SET "data" = excluded."data", ` +
			`"expires_at" = excluded."expires_at", "created_at" = excluded."created_at", "user_id" = excluded."user_id"`
	}
	s.sqlUpdate = fmt.Sprintf(`UPDATE %s SET %s = ?, %s = ?, %s = ? WHERE %s = ? AND %s = ?`,
		t, q("data"), q("expires_at"), q("user_id"), q("id"), q("created_at"))
	s.sqlReseal = fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s = ? AND %s = ?`, t, q("data"), q("id"), q("data"))
	s.sqlCount = fmt.Sprintf(`SELECT COUNT(*) AS %s FROM %s WHERE %s > ?`, q("n"), t, q("expires_at"))
	s.sqlRange = fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[1]s > ? AND %[3]s > ? ORDER BY %[1]s LIMIT %[4]d`,
		q("id"), t, q("expires_at"), dbRangePage)
	s.sqlDestroyUser = fmt.Sprintf(`DELETE FROM %s WHERE %s = ?`, t, q("user_id"))
	s.sqlDelete = fmt.Sprintf(`DELETE FROM %s WHERE %s = ?`, t, q("id"))
	// UpdateTTL: expires_at = min(now+ttl, created_at+maxLifetime), only for
	// a live row, and with TouchInterval only when it would move by at least
	// TouchInterval.
	set := "?"
	if s.config.MaxLifetime > 0 {
		set = fmt.Sprintf(`CASE WHEN %[1]s + ? < ? THEN %[1]s + ? ELSE ? END`, q("created_at"))
	}
	s.sqlTouch = fmt.Sprintf(`UPDATE %s SET %s = %s WHERE %s = ? AND %s > ?`,
		t, q("expires_at"), set, q("id"), q("expires_at"))
	if s.config.TouchInterval > 0 {
		s.sqlTouch += fmt.Sprintf(` AND %s < ?`, q("expires_at"))
	}
	if s.dialect == dialectMySQL {
		s.sqlCleanup = fmt.Sprintf("DELETE FROM %s WHERE `expires_at` < ? LIMIT %d", t, s.config.CleanupBatch)
	} else {
		s.sqlCleanup = fmt.Sprintf(`DELETE FROM %[1]s WHERE "id" IN (SELECT "id" FROM %[1]s WHERE "expires_at" < ? LIMIT %[2]d)`,
			t, s.config.CleanupBatch)
	}
}

// ddl returns the statements that create the table and its index.
func (s *StorageDB) ddl() []string {
	q := s.dialect.quote
	t, idx, userIdx := q(s.table), q(s.table+"_expires_at"), q(s.table+"_user_id")
	switch s.dialect {
	case dialectMySQL:
		return []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n"+
			"  `id`         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n"+
			"  `data`       LONGBLOB NOT NULL,\n"+
			"  `expires_at` BIGINT NOT NULL,\n"+
			"  `created_at` BIGINT NOT NULL,\n"+
			"  `user_id`    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,\n"+
			"  PRIMARY KEY (`id`),\n"+
			"  KEY %s (`expires_at`),\n"+
			"  KEY %s (`user_id`)\n"+
			") ENGINE=InnoDB", t, idx, userIdx)}
	}
	blob := "BLOB"
	if s.dialect == dialectPgSQL {
		blob = "BYTEA"
	}
	return []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  "id"         VARCHAR(128) NOT NULL PRIMARY KEY,
  "data"       %s NOT NULL,
  "expires_at" BIGINT NOT NULL,
  "created_at" BIGINT NOT NULL,
  "user_id"    VARCHAR(255) NULL
)`, t, blob),
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("expires_at")`, idx, t),
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s ("user_id")`, userIdx, t),
	}
}

// createTableAtStart creates the table when NewStorageDB is called. When the
// database does not answer a ping within the statement timeout it leaves the
// table to the first statement (see ensureTable) and logs a warning, since
// an outage of the database must not stop start-up; when it answers, a
// failing DDL is an error of the setup and is returned.
func (s *StorageDB) createTableAtStart(ctx context.Context) error {
	pingCtx, cancel := ctx, context.CancelFunc(func() {})
	if s.config.Timeout > 0 {
		pingCtx, cancel = context.WithTimeout(ctx, s.config.Timeout)
	}
	defer cancel()
	pool, err := s.db.Master()
	if err == nil {
		err = waitBounded(pingCtx, pool.PingContext)
	}
	s.startPinged, s.startPingErr = true, err
	if err != nil {
		startupLogger().Warningf(ctx,
			`gfsession: db: the database does not answer (%v): table %s is created on first use`,
			redactDBError(s.db, err), s.table)
		return nil
	}
	if err = s.createTable(ctx); err != nil {
		return err
	}
	s.tableReady.Store(true)
	return nil
}

// redactDBError returns `err` with the password of `db`'s config blanked
// out: a driver's error may quote the connection string.
func redactDBError(db gdb.DB, err error) error {
	if node := db.GetConfig(); node != nil && node.Pass != "" {
		return redactedError{err: err, secret: node.Pass}
	}
	return err
}

// ensureTable creates the table if that is still to be done, once: a
// failure (the database still down) is returned, and the next statement
// tries again.
func (s *StorageDB) ensureTable(ctx context.Context) error {
	if s.tableReady.Load() {
		return nil
	}
	s.tableMu.Lock()
	defer s.tableMu.Unlock()
	if s.tableReady.Load() {
		return nil
	}
	if err := s.createTable(ctx); err != nil {
		return err
	}
	s.tableReady.Store(true)
	return nil
}

func (s *StorageDB) createTable(ctx context.Context) error {
	for _, stmt := range s.ddl() {
		if _, err := s.execNow(ctx, stmtBulk, stmt); err != nil {
			// Concurrent CREATE ... IF NOT EXISTS can fail on PostgreSQL
			// (a race on its catalog); what counts is that the table is there.
			if _, perr := s.queryNow(ctx, stmtBulk, fmt.Sprintf(`SELECT 1 FROM %s WHERE 1 = 0`, s.dialect.quote(s.table))); perr == nil {
				continue
			}
			return gerror.WrapCodef(gcode.CodeDbOperationError, err, `gfsession: db: creating table %s`, s.table)
		}
	}
	return nil
}

// checkSQLite warns, through gf's logger, when the SQLite database is not
// set up for concurrent requests: without the WAL journal every read waits
// while a write commits, and without a busy timeout a statement that meets
// another connection's lock fails at once. It says what to add to the link.
func (s *StorageDB) checkSQLite(ctx context.Context) {
	pragma := func(name string) string {
		rec, err := s.queryNow(ctx, stmtBulk, "PRAGMA "+name)
		if err != nil {
			return ""
		}
		for _, v := range rec {
			return strings.ToLower(v.String())
		}
		return ""
	}
	var missing []string
	if mode := pragma("journal_mode"); mode != "" && mode != "wal" && mode != "memory" {
		missing = append(missing, "journal_mode=WAL")
	}
	if pragma("busy_timeout") == "0" {
		missing = append(missing, fmt.Sprintf("busy_timeout=%d", DefaultDBSQLiteBusyTimeout.Milliseconds()))
	}
	if len(missing) > 0 {
		startupLogger().Warningf(ctx,
			`gfsession: db: the SQLite database is not set up for concurrent requests: add %s to its link, e.g. "sqlite::@file(sessions.db)?%s"`,
			strings.Join(missing, " and "), strings.Join(missing, "&"))
	}
}

// sqliteLinkDefaults returns SQLite `link` with what concurrent requests
// need added, unless the link sets it: the WAL journal, in which readers
// never wait for the writer, and a busy timeout of
// DefaultDBSQLiteBusyTimeout, so that a write waits for another
// connection's write lock instead of failing at once. gf's SQLite driver
// runs each parameter of the link as a PRAGMA on every connection. The
// parameters follow the file(...) part, as gf parses the link: a '?' inside
// it belongs to the file name (a "file:" URI), and a parameter the link sets
// is never changed.
func sqliteLinkDefaults(link string) string {
	tail := link // the part of the link the parameters are in
	if open := strings.Index(link, "("); open >= 0 {
		if end := strings.Index(link[open:], ")"); end >= 0 {
			tail = link[open+end+1:]
		}
	}
	_, params, hasParams := strings.Cut(tail, "?")
	has := func(name string) bool {
		for _, p := range strings.Split(params, "&") {
			if k, _, _ := strings.Cut(p, "="); strings.EqualFold(strings.TrimSpace(k), name) {
				return true
			}
		}
		return false
	}
	var add []string
	if !has("journal_mode") {
		add = append(add, "journal_mode=WAL")
	}
	if !has("busy_timeout") {
		add = append(add, fmt.Sprintf("busy_timeout=%d", DefaultDBSQLiteBusyTimeout.Milliseconds()))
	}
	if len(add) == 0 {
		return link
	}
	switch {
	case !hasParams:
		link += "?"
	case params != "" && !strings.HasSuffix(params, "&"):
		link += "&"
	}
	return link + strings.Join(add, "&")
}

// stmtKind tells guarded how a statement runs.
type stmtKind uint8

const (
	// stmtPoint is a statement on one session, by primary key: it answers
	// in milliseconds, so its timeout means the database is not answering.
	stmtPoint stmtKind = 0
	// stmtWrite marks a statement that writes: on SQLite it waits for the
	// storage's single writer turn.
	stmtWrite stmtKind = 1
	// stmtBulk marks a statement over many rows (cleanup, count, listing,
	// DDL), which may take long on a big table: its timeout is its own
	// failure, not a sign that the database stopped answering.
	stmtBulk stmtKind = 2
)

// errDBTimeout is the cause of a statement's context that reached
// DBConfig.Timeout.
var errDBTimeout = errors.New("gfsession: db: statement timeout")

// dbGuard bounds what a database that stops answering (a hung server, a
// network partition that drops packets, a failover that leaves the pool's
// connections silent) costs the application:
//
//   - Every statement runs under DBConfig.Timeout, counted from the call:
//     waiting for a turn is part of it. Where the driver cannot be
//     interrupted, the statement runs on a goroutine of its own, so that
//     the caller returns at the timeout and the statement is left to end
//     with its connection. lib/pq only asks the server to cancel (on a
//     second connection), which a hung server or a partition never
//     receives; SQLite's busy handler does not look at the context.
//     go-sql-driver/mysql closes the connection when the context ends, so
//     MySQL statements run on the caller's goroutine.
//   - At most DBConfig.MaxConns statements run at once; a further one waits
//     for a turn within its timeout. A statement left running at its
//     timeout gives its turn up to a budget of its own, of MaxConns
//     statements more, so that connections a failover left silent (lib/pq
//     waits on them until the kernel gives up, minutes later) do not keep
//     the turns from the statements that would run on new connections.
//     When that budget is full too, the abandoned statement keeps its turn.
//     At most 2*MaxConns+1 statements (the one of the breaker below
//     included) run at once, however long the database stays silent.
//   - On MySQL and PostgreSQL with a Timeout, a statement on one session
//     that itself ran for at least half its Timeout without an answer (or
//     that the driver gave up on for a network timeout) opens a breaker:
//     for the next Timeout every statement fails at once, so that a request
//     that could not load its session does not wait again to write it, and
//     other requests do not wait at all. Time spent waiting for a turn
//     never opens it: a busy database is not a silent one. Then one
//     statement (the probe) is let through, outside the turns, so that it
//     runs even while abandoned statements hold all of them; the first
//     answer (an error too) closes the breaker, so the storage recovers by
//     itself. Idle connections of the pool are closed when the breaker
//     opens (see dbGuard.noAnswer): the probe then dials a new connection
//     instead of picking another connection that went silent with the
//     first.
//   - On SQLite, which has one write lock per database, writing statements
//     take turns in the storage, first come first served, instead of
//     polling for the lock in SQLite's busy handler, whose back-off lets
//     some writers starve for seconds when many write at once. A writer
//     takes its writer turn before a statement turn, so that writers
//     waiting for each other leave the turns to the reads, which WAL runs
//     beside the writer.
type dbGuard struct {
	timeout   time.Duration
	detach    bool          // run statements on a goroutine of their own
	breaker   bool          // point statement timeouts open the breaker
	slots     chan struct{} // one per statement running in its turn
	abandoned chan struct{} // one per statement left running at its timeout that gave its turn up
	writer    chan struct{} // SQLite: one per writing statement running; else nil
	openUntil atomic.Int64  // Unix ns until which statements fail fast; 0 when closed
	probing   atomic.Bool   // the probe of the open breaker runs
	// noAnswer, when set, is called when a statement opens the breaker.
	noAnswer func()
}

func newDBGuard(d dbDialect, timeout time.Duration, maxConns int) *dbGuard {
	g := &dbGuard{
		timeout:   timeout,
		detach:    d != dialectMySQL,
		breaker:   d != dialectSQLite && timeout > 0,
		slots:     make(chan struct{}, maxConns),
		abandoned: make(chan struct{}, maxConns),
	}
	if d == dialectSQLite {
		g.writer = make(chan struct{}, 1)
	}
	return g
}

// dbTurn is what one statement holds while it runs: its writer turn, and
// its statement turn, the probe's, or a place in the abandoned budget.
// It is released once, when the statement ends.
type dbTurn struct {
	g     *dbGuard
	write bool // holds the writer turn
	mu    sync.Mutex
	held  chan struct{} // g.slots or g.abandoned; nil for the probe
	probe bool          // holds the probe's turn
	ended bool
}

// abandon moves the turn of a statement left running at its timeout to the
// abandoned budget, if the statement still runs and the budget has room.
func (t *dbTurn) abandon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	select {
	case t.g.abandoned <- struct{}{}:
	default:
		return // the budget is full: the statement keeps its turn
	}
	t.free()
	t.held, t.probe = t.g.abandoned, false
}

// release ends the statement's hold.
func (t *dbTurn) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	t.ended = true
	if t.write {
		<-t.g.writer
	}
	t.free()
}

func (t *dbTurn) free() {
	if t.probe {
		t.g.probing.Store(false)
	}
	if t.held != nil {
		<-t.held
	}
}

// guarded runs statement `f` under guard `g` (see dbGuard) and returns its
// result, or an error with CodeDbOperationError when the breaker is open or
// the statement does not end within DBConfig.Timeout. A panic of `f`
// releases the statement's turn and passes on to the caller (on a
// goroutine of its own, `f` is expected not to panic).
func guarded[T any](ctx context.Context, g *dbGuard, kind stmtKind, f func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	probe, err := g.enter()
	if err != nil {
		return zero, err
	}
	var deadline time.Time // zero without a timeout
	if g.timeout > 0 {
		var cancel context.CancelFunc
		deadline = time.Now().Add(g.timeout)
		ctx, cancel = context.WithDeadlineCause(ctx, deadline, errDBTimeout)
		defer cancel()
	}
	turn := &dbTurn{g: g, probe: probe, write: kind&stmtWrite != 0 && g.writer != nil}
	if err = g.acquire(ctx, turn); err != nil {
		if probe {
			g.probing.Store(false)
		}
		return zero, g.queued(ctx, err)
	}
	started := time.Now()
	if !g.detach || g.timeout <= 0 {
		finished := false
		defer func() {
			if !finished { // `f` panicked: the panic goes on
				turn.release()
			}
		}()
		v, err := f(ctx)
		finished = true
		turn.release()
		return v, g.exit(ctx, deadline, started, kind, err)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer turn.release()
		v, err := f(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, g.exit(ctx, deadline, started, kind, r.err)
	case <-ctx.Done():
		select {
		case r := <-done: // ended at the deadline
			return r.v, g.exit(ctx, deadline, started, kind, r.err)
		default:
		}
		turn.abandon()
		return zero, g.exit(ctx, deadline, started, kind, ctx.Err())
	}
}

// enter fails fast while the breaker is open, and lets one statement
// through (`probe`) once the open period is over.
func (g *dbGuard) enter() (probe bool, err error) {
	until := g.openUntil.Load()
	if until == 0 {
		return false, nil
	}
	wait := time.Until(time.Unix(0, until))
	if wait <= 0 && g.probing.CompareAndSwap(false, true) {
		return true, nil
	}
	return false, gerror.NewCodef(gcode.CodeDbOperationError,
		`a statement got no answer from the database within %v: failing fast until a statement gets one again (next try in %v)`,
		g.timeout, max(wait, 0).Round(time.Millisecond))
}

// acquire waits for the turns of `t`: on SQLite the writer turn when it
// writes, then a statement turn, but none for the probe.
func (g *dbGuard) acquire(ctx context.Context, t *dbTurn) error {
	if t.write {
		select {
		case g.writer <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if t.probe {
		return nil
	}
	select {
	case g.slots <- struct{}{}:
		t.held = g.slots
		return nil
	case <-ctx.Done():
		if t.write {
			<-g.writer
		}
		return ctx.Err()
	}
}

// queued returns the error for the caller of a statement that did not get
// its turn under `ctx` (error `err`), which tells nothing about the
// database.
func (g *dbGuard) queued(ctx context.Context, err error) error {
	if context.Cause(ctx) == errDBTimeout {
		return gerror.WrapCodef(gcode.CodeDbOperationError, context.DeadlineExceeded,
			`no turn to run the statement within %v: %d statements run (maxConns)`, g.timeout, cap(g.slots))
	}
	return gerror.WrapCode(gcode.CodeDbOperationError, err)
}

// exit updates the breaker with the outcome `err` of a statement that ran
// under `ctx` until `deadline` (zero: none) from `started`, and returns the
// error for the caller.
func (g *dbGuard) exit(ctx context.Context, deadline, started time.Time, kind stmtKind, err error) error {
	switch {
	case err == nil:
		g.answered()
		return nil
	case timedOut(ctx, deadline, err):
		// A statement that got its turn late and then little time is no
		// sign of a silent database; a driver's own network timeout is.
		ranLong := time.Since(started) >= g.timeout/2 || (ctx.Err() == nil && time.Now().Before(deadline))
		if g.breaker && kind&stmtBulk == 0 && ranLong {
			g.openUntil.Store(time.Now().Add(g.timeout).UnixNano())
			if g.noAnswer != nil {
				g.noAnswer()
			}
		}
		return gerror.WrapCodef(gcode.CodeDbOperationError, context.DeadlineExceeded,
			`no answer from the database within %v`, g.timeout)
	case ctx.Err() != nil:
		// The caller gave up (its request ended), which tells nothing about
		// the database.
		return gerror.WrapCode(gcode.CodeDbOperationError, ctx.Err())
	default:
		// An answer, if an error: the database is there.
		g.answered()
		return err
	}
}

// timedOut reports whether statement error `err` means no answer in time:
// the statement reached its deadline (a driver's own network timeout on the
// same deadline may report it before `ctx` does), or the driver gave up
// waiting on the network before the caller did (e.g. a dial timeout of the
// link).
func timedOut(ctx context.Context, deadline time.Time, err error) bool {
	if context.Cause(ctx) == errDBTimeout || (!deadline.IsZero() && !time.Now().Before(deadline)) {
		return true
	}
	if ctx.Err() != nil {
		return false // the caller's own deadline or cancellation
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// answered closes the breaker.
func (g *dbGuard) answered() {
	if g.openUntil.Load() != 0 {
		g.openUntil.Store(0)
	}
}

// drain waits until no statement runs, abandoned ones included, at most
// until `ctx` is done.
func (g *dbGuard) drain(ctx context.Context) error {
	var held []chan struct{}
	defer func() {
		for _, c := range held {
			<-c
		}
	}()
	for _, c := range []chan struct{}{g.slots, g.abandoned} {
		for n := 0; n < cap(c); n++ {
			select {
			case c <- struct{}{}:
				held = append(held, c)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// dbDefaultMaxIdleConns is gf's number of idle connections a pool keeps
// when its config sets none.
const dbDefaultMaxIdleConns = 10

// closeIdleConns closes the idle connections of the master node's pool,
// after a statement got no answer: when a failover, a crashed server or a
// middlebox that lost its state left the connections silent, each idle
// one would otherwise cost the next statement its Timeout, and the
// breaker one more open period. The pool then dials new connections. It
// costs a healthy database, whose statement was only slow, the reconnects
// of the idle connections, at most once per Timeout.
func (s *StorageDB) closeIdleConns() {
	pool, err := s.db.Master()
	if err != nil || pool == nil {
		return
	}
	n := s.db.GetConfig().MaxIdleConnCount
	if n <= 0 {
		n = dbDefaultMaxIdleConns
	}
	pool.SetMaxIdleConns(0) // closes them
	pool.SetMaxIdleConns(n)
}

// dbExecTries is how often exec runs a statement that the database rolled
// back as a deadlock victim or a serialization failure.
const dbExecTries = 3

// exec runs one statement. Every statement of this storage is a single
// autocommit statement, so one the database rolled back as a deadlock
// victim (MySQL/MariaDB 1213, PostgreSQL 40P01) or a serialization failure
// (40001) is run again, up to dbExecTries times: a request refreshing its
// session while the cleaner deletes expired rows next to it in the expiry
// index must not fail for that.
func (s *StorageDB) exec(ctx context.Context, kind stmtKind, sql string, args ...any) (int64, error) {
	if err := s.ensureTable(ctx); err != nil {
		return 0, err
	}
	return s.execNow(ctx, kind, sql, args...)
}

// execNow is exec without ensureTable.
func (s *StorageDB) execNow(ctx context.Context, kind stmtKind, sql string, args ...any) (int64, error) {
	return guarded(ctx, s.guard, kind|stmtWrite, func(ctx context.Context) (int64, error) {
		res, err := s.db.Exec(ctx, sql, args...)
		for try := 1; err != nil && try < dbExecTries && rolledBack(err) && ctx.Err() == nil; try++ {
			res, err = s.db.Exec(ctx, sql, args...)
		}
		if err != nil {
			return 0, driverError(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, nil // affected rows are informational only
		}
		return n, nil
	})
}

// query runs one SELECT and returns its first row, or nil.
func (s *StorageDB) query(ctx context.Context, kind stmtKind, sql string, args ...any) (gdb.Record, error) {
	if err := s.ensureTable(ctx); err != nil {
		return nil, err
	}
	return s.queryNow(ctx, kind, sql, args...)
}

// queryNow is query without ensureTable.
func (s *StorageDB) queryNow(ctx context.Context, kind stmtKind, sql string, args ...any) (gdb.Record, error) {
	return guarded(ctx, s.guard, kind, func(ctx context.Context) (gdb.Record, error) {
		rows, err := s.selectMaster(ctx, sql, args...)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		return rows[0], nil
	})
}

// selectMaster runs a SELECT on the group's master node. gdb sends reads to
// a slave node when the group has one, and a replica lags: a session
// written a moment ago (at login) would read as missing and one destroyed a
// moment ago as present. Sessions are read where they are written.
func (s *StorageDB) selectMaster(ctx context.Context, sql string, args ...any) (gdb.Result, error) {
	link, err := s.db.GetCore().MasterLink()
	if err != nil {
		return nil, driverError(err)
	}
	rows, err := s.db.DoSelect(ctx, link, sql, args...)
	if err != nil {
		return nil, driverError(err)
	}
	return rows, nil
}

// rolledBack reports whether `err` says the database rolled the statement
// back as a deadlock victim or a serialization failure: SQLSTATE 40001 or
// 40P01, read from lib/pq's SQLState method or from the "Error 1213
// (40001)" form of go-sql-driver/mysql's message (the drivers are the
// user's imports, not this module's).
func rolledBack(err error) bool {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		code := st.SQLState()
		return code == "40001" || code == "40P01"
	}
	return strings.Contains(err.Error(), " (40001): ")
}

// driverError drops gdb's rendering of the statement with its arguments
// from `err`, which would put session data into logs, and keeps the
// driver's error; callers name the session and table.
func driverError(err error) error {
	return gerror.WrapCode(gcode.CodeDbOperationError, gerror.Cause(err))
}

// init registers the storage type TypeDB.
func init() {
	Register(TypeDB, newStorageDBFromConfig)
}

// newStorageDBFromConfig builds a StorageDB from a config map: the DBConfig
// keys plus either `database` (a group of gf's `database:` config node) or
// `link` (a gdb link such as "mysql:root:@tcp(127.0.0.1:3306)/test").
func newStorageDBFromConfig(ctx context.Context, m map[string]any) (gsession.Storage, error) {
	var (
		config DBConfig
		plain  = make(map[string]any, len(m))
	)
	for k, v := range m {
		switch strings.ToLower(k) {
		case "createtable":
			var b bool
			if err := setField(reflect.ValueOf(&b).Elem(), v); err != nil {
				return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, k)
			}
			config.CreateTable = &b
		case "cleanupinterval":
			// "off" disables the cleaner, as a negative duration does.
			if str, ok := v.(string); ok && strings.EqualFold(strings.TrimSpace(str), "off") {
				config.CleanupInterval = -1
				continue
			}
			plain[k] = v
		default:
			plain[k] = v
		}
	}
	rest, err := decodeConfig(configPath, plain, &config, "database", "link")
	if err != nil {
		return nil, err
	}
	var group, link, groupKey, linkKey string
	for k, v := range rest {
		str, ok := v.(string)
		if !ok {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: want a string, got %v (%T)`, configPath, k, v, v)
		}
		if strings.EqualFold(k, "database") {
			group, groupKey = str, k
		} else {
			link, linkKey = str, k
		}
	}
	var (
		db     gdb.DB
		ownsDB bool
	)
	switch {
	case groupKey != "" && linkKey != "":
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s: set either "database" (a group of the database config) or "link", not both`, configPath)
	case linkKey != "":
		if db, err = openDBLink(link); err != nil {
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, linkKey)
		}
		ownsDB = true
	default:
		if groupKey == "" {
			groupKey = "database"
		}
		if db, ownsDB, err = openDBGroup(ctx, group); err != nil {
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, groupKey)
		}
	}
	s, err := NewStorageDB(db, config)
	if err != nil {
		if ownsDB {
			_ = db.Close(ctx)
		}
		return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s`, configPath)
	}
	s.ownsDB = ownsDB
	return s, nil
}

// openDBLink opens a gdb.DB for a gdb `link`.
func openDBLink(link string) (gdb.DB, error) {
	dbType, _, _ := strings.Cut(link, ":")
	d, ok := dbDialects[dbType]
	if !ok {
		return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`database type %q is not supported; supported: %s (link syntax: type:user:pass@protocol(host:port)/dbname?options)`,
			dbType, dbSupportedTypes)
	}
	if d.dialect == dialectSQLite {
		link = sqliteLinkDefaults(link)
	}
	db, err := gdb.New(gdb.ConfigNode{Link: link})
	if err != nil {
		return nil, explainDriverError(err, dbType, d.driver)
	}
	return db, nil
}

// openDBGroup returns a gdb.DB for config group `group` ("" for the default
// group): the group set with gdb.SetConfig, or else group `group` of the
// config file's "database" node. `owned` reports a DB made for the storage,
// which its Close closes; a group set in code shares gdb.Instance's DB.
//
// It never calls g.DB: the config hook runs inside g.Server, which holds one
// of the locks of gf's instance registry (64 of them, chosen by a hash of the
// instance name), and g.DB takes one of the same locks, so for about one
// server name in 64 start-up would wait forever. A group of the config file
// is read from the config and opened with gdb.New, on its master node.
func openDBGroup(ctx context.Context, group string) (db gdb.DB, owned bool, err error) {
	name := group
	if name == "" {
		name = gdb.DefaultGroupName
	}
	cg, _ := gdb.GetConfigGroup(name)
	if len(cg) > 0 {
		// gdb.Instance has a registry of its own, not gf's instance one.
		db, err = gdb.Instance(name)
	} else {
		if cg, err = dbGroupFileConfig(ctx, name); err != nil {
			return nil, false, err
		}
		node := cg[0]
		for _, n := range cg {
			if n.Role != "slave" {
				node = n
				break
			}
		}
		db, err = gdb.New(node)
		owned = true
	}
	if err == nil && db == nil {
		err = gerror.NewCodef(gcode.CodeInvalidConfiguration, `database group %q is not configured`, name)
	}
	if err != nil {
		if len(cg) > 0 {
			dbType := cg[0].Type
			if dbType == "" {
				dbType, _, _ = strings.Cut(cg[0].Link, ":")
			}
			err = explainDriverError(err, dbType, dbDialects[dbType].driver)
		}
		return nil, false, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `database group %q`, name)
	}
	return db, owned, nil
}

// dbGroupFileConfig reads group `name` of the config file's "database" node
// as g.DB does: a node or a list of nodes under the group's name, or, for
// the default group, a node given as the "database" node itself.
func dbGroupFileConfig(ctx context.Context, name string) (gdb.ConfigGroup, error) {
	notConfigured := gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`database group %q is not configured (not in the "database" node of the config file, and not set with gdb.SetConfig)`, name)
	if !g.Cfg().Available(ctx) {
		return nil, notConfigured
	}
	all, err := g.Cfg().Data(ctx)
	if err != nil {
		return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `reading database group %q from the config`, name)
	}
	_, v := gutil.MapPossibleItemByKey(all, "database")
	nodes := gconv.Map(v)
	groupValue, ok := nodes[name]
	if !ok {
		if name != gdb.DefaultGroupName {
			return nil, notConfigured
		}
		groupValue = nodes
	}
	var cg gdb.ConfigGroup
	addNode := func(value any) error {
		m, ok := value.(map[string]any)
		if !ok {
			return nil
		}
		var node gdb.ConfigNode
		if err := gconv.Struct(m, &node); err != nil {
			return gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `database group %q`, name)
		}
		if _, link := gutil.MapPossibleItemByKey(m, "Link"); link != nil {
			node.Link = gconv.String(link)
		}
		if node.Link != "" || node.Host != "" {
			cg = append(cg, node)
		}
		return nil
	}
	switch value := groupValue.(type) {
	case []any:
		for _, item := range value {
			if err := addNode(item); err != nil {
				return nil, err
			}
		}
	default:
		if err := addNode(value); err != nil {
			return nil, err
		}
	}
	if len(cg) == 0 {
		return nil, notConfigured
	}
	return cg, nil
}

// explainDriverError turns gdb's "cannot find database driver" into an error
// naming the blank import that is missing.
func explainDriverError(err error, dbType, driver string) error {
	if !strings.Contains(err.Error(), "cannot find database driver") {
		return err
	}
	if driver == "" {
		return gerror.WrapCodef(gcode.CodeInvalidConfiguration, err,
			`database type %q: no gdb driver registered; supported: %s`, dbType, dbSupportedTypes)
	}
	return gerror.NewCodef(gcode.CodeInvalidConfiguration,
		`database type %q: gf's driver is not imported; add the blank import _ %q to your main package`, dbType, driver)
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
	now := time.Now()
	rec, err := s.query(ctx, stmtPoint, s.sqlSelect, sessionId, now.UnixMilli())
	if err != nil {
		return nil, gerror.Wrapf(err, `gfsession: db: loading session %q from table %s`, shortId(sessionId), s.table)
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
	m := gmap.NewStrAnyMapFrom(data, true)
	s.tracker.track(m, sessionId, nil, created)
	if s.touches != nil {
		s.touches.put(sessionId, rec["expires_at"].Int64())
	}
	return m, nil
}

// reseal stores session `id`, read as `stored` and sealed with an old key,
// sealed with the first key, once: a session that is only read would keep
// the old key needed for as long as it lives. The row is updated only if
// its data is still what was read, and a failure only logs: the read
// succeeded.
func (s *StorageDB) reseal(ctx context.Context, id, stored string, created time.Time, data map[string]any) {
	blob, err := s.env.encodeSession(id, created, data)
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
	if !IsValidSessionId(sessionId) {
		return errInvalidId(sessionId)
	}
	if sessionData == nil {
		return gerror.NewCodef(gcode.CodeInvalidParameter, `gfsession: db: writing session %q: session data is nil`, shortId(sessionId))
	}
	if s.touches != nil {
		s.touches.take(sessionId)
	}
	data := sessionData.Map()
	now := time.Now()
	created := now
	l, ref, found := s.tracker.lookup(sessionData)
	loaded := found && l.id == sessionId && !s.tracker.removedBySelf(ctx, sessionId, l)
	if loaded || (found && l.id != sessionId) {
		// Loaded, or loaded under another id (RegenerateId): the session
		// keeps its creation time, and so its MaxLifetime.
		if c, ok := l.extra.(time.Time); ok && !c.IsZero() {
			created = c
		}
	}
	left := lifetimeLeft(created, s.config.MaxLifetime, ttl, now)
	if len(data) == 0 {
		return s.RemoveAll(ctx, sessionId)
	}
	if left <= 0 {
		// Past MaxLifetime: deleted for good, not by the request's choice,
		// so a further write of this map is dropped too.
		if _, err := s.exec(ctx, stmtPoint, s.sqlDelete, sessionId); err != nil {
			return gerror.Wrapf(err, `gfsession: db: deleting session %q from table %s`, shortId(sessionId), s.table)
		}
		return nil
	}
	blob, err := s.env.encodeSession(sessionId, created, data)
	if err != nil {
		return gerror.Wrapf(err, `gfsession: db: encoding session %q`, shortId(sessionId))
	}
	var user any // NULL without a user
	if u := userOf(data, s.config.UserKey); u != "" {
		user = dbUserId(u)
	}
	expires := now.Add(left).UnixMilli()
	if loaded {
		// Update the row of the session loaded only. Its idle expiry may
		// have passed during the request (GetSession does not move it):
		// the user was active, the write goes. (MySQL counts changed rows:
		// a write identical to the row, down to the millisecond of its
		// expiry, also counts 0 and is dropped, which changes nothing.)
		n, err := s.exec(ctx, stmtPoint, s.sqlUpdate, blob, expires, user, sessionId, created.UnixMilli())
		if err != nil {
			return gerror.Wrapf(err, `gfsession: db: writing session %q to table %s`, shortId(sessionId), s.table)
		}
		if n == 0 {
			logStaleWrite(ctx, "db", sessionId)
		}
		return nil
	}
	if _, err = s.exec(ctx, stmtPoint, s.sqlUpsert, sessionId, blob, expires, created.UnixMilli(), user); err != nil {
		return gerror.Wrapf(err, `gfsession: db: writing session %q to table %s`, shortId(sessionId), s.table)
	}
	s.tracker.retrack(ref, sessionId, nil, created)
	return nil
}

// UpdateTTL restarts the idle TTL of a live session (never beyond
// MaxLifetime) by updating its expiry column only. With TouchInterval it
// writes only when the expiry would move by TouchInterval or more, and skips
// the statement entirely when GetSession of this storage loaded the session
// recently enough. A missing session is not an error.
func (s *StorageDB) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
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
		return gerror.Wrapf(err, `gfsession: db: refreshing session %q in table %s`, shortId(sessionId), s.table)
	}
	return nil
}

// RemoveAll deletes the session's row. A missing session is not an error.
func (s *StorageDB) RemoveAll(ctx context.Context, sessionId string) error {
	if !IsValidSessionId(sessionId) {
		return nil
	}
	if s.touches != nil {
		s.touches.take(sessionId)
	}
	if _, err := s.exec(ctx, stmtPoint, s.sqlDelete, sessionId); err != nil {
		return gerror.Wrapf(err, `gfsession: db: deleting session %q from table %s`, shortId(sessionId), s.table)
	}
	s.tracker.removed(ctx, sessionId)
	return nil
}

// Cleanup deletes the rows that expired before now, in batches of
// CleanupBatch rows, until a batch deletes fewer, and returns how many it
// deleted. The cleaner goroutine runs it every CleanupInterval; call it
// yourself (e.g. from a job on one instance) when the cleaner is disabled.
// It stops early, with the error of `ctx`, when `ctx` is done.
func (s *StorageDB) Cleanup(ctx context.Context) (deleted int64, err error) {
	batch := int64(s.config.CleanupBatch)
	for {
		began := time.Now()
		n, err := s.exec(ctx, stmtBulk, s.sqlCleanup, began.UnixMilli())
		deleted += n
		if err != nil {
			return deleted, gerror.Wrapf(err, `gfsession: db: deleting expired sessions from table %s`, s.table)
		}
		if n < batch {
			return deleted, nil
		}
		// Pause between batches as long as the batch took, so that the
		// cleaner holds the database (and SQLite's single write lock) at
		// most half of the time and requests keep their share.
		pause := min(max(time.Since(began), time.Millisecond), time.Second)
		select {
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
		return 0, gerror.Wrapf(err, `gfsession: db: counting sessions in table %s`, s.table)
	}
	return rec["n"].Int(), nil
}

// Range calls `fn` with the id of each live session, in id order, until `fn`
// returns false. It reads the ids in pages by primary key, so it never
// holds more than one page in memory and never keeps a statement open while
// `fn` runs.
func (s *StorageDB) Range(ctx context.Context, fn func(sessionId string) bool) error {
	after := ""
	for {
		var (
			page gdb.Result
			err  error
		)
		if err = s.ensureTable(ctx); err == nil {
			page, err = guarded(ctx, s.guard, stmtBulk, func(ctx context.Context) (gdb.Result, error) {
				return s.selectMaster(ctx, s.sqlRange, after, time.Now().UnixMilli())
			})
		}
		if err != nil {
			return gerror.Wrapf(err, `gfsession: db: listing sessions in table %s`, s.table)
		}
		for _, rec := range page {
			after = rec["id"].String()
			if !fn(after) {
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
	return s.RemoveAll(ctx, sessionId)
}

// DestroyUser deletes every session whose UserKey value equals `userId`
// (compared as strings), with one indexed DELETE, and returns how many rows
// it deleted. Rows past their idle TTL that the cleaner has not deleted yet
// go too, and count: a request that loaded one before the TTL ran out may
// still write it (SetSession). It fails with CodeInvalidOperation without a
// UserKey.
func (s *StorageDB) DestroyUser(ctx context.Context, userId string) (int, error) {
	if s.config.UserKey == "" {
		return 0, errNoUserKey("StorageDB")
	}
	if userId == "" {
		return 0, nil
	}
	n, err := s.exec(ctx, stmtBulk, s.sqlDestroyUser, dbUserId(userId))
	if err != nil {
		return 0, gerror.Wrapf(err, `gfsession: db: deleting the sessions of user %q from table %s`, userId, s.table)
	}
	return int(n), nil
}

// dbUserId returns what the user_id column holds for user `u`: `u` itself,
// or its SHA-256 when it does not fit (or is not UTF-8, which MySQL refuses).
func dbUserId(u string) string {
	if len(u) <= dbMaxUserId && utf8.ValidString(u) {
		return u
	}
	sum := sha256.Sum256([]byte(u))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Close stops the cleaner and waits for it, and for the statements running
// (at most until `ctx` is done or one DBConfig.Timeout has passed: a
// statement the database stopped answering may run on), so that no
// statement of the cleaner runs after it returns. It then closes the
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
