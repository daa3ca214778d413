package gfsession

import (
	"context"
	"fmt"
	"strings"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

// dbDialect is the SQL flavour of a gdb driver type.
type dbDialect int

const (
	dialectMySQL dbDialect = iota + 1
	dialectPgSQL
	dialectSQLite
)

func (d dbDialect) quote(name string) string {
	if d == dialectMySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
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
	s.sqlHolds = fmt.Sprintf(`SELECT 1 FROM %s WHERE %s = ? AND %s = ?`, t, q("id"), q("created_at"))
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
	s.sqlDestroyUserExcept = fmt.Sprintf(`DELETE FROM %s WHERE %s = ? AND %s <> ?`, t, q("user_id"), q("id"))
	s.sqlUsers = fmt.Sprintf(`SELECT %[1]s, COUNT(*) AS %[2]s FROM %[3]s WHERE %[1]s > ? AND %[4]s > ? GROUP BY %[1]s ORDER BY %[1]s LIMIT %[5]d`,
		q("user_id"), q("n"), t, q("expires_at"), dbRangePage)
	s.sqlCountUsers = fmt.Sprintf(`SELECT COUNT(DISTINCT %s) AS %s FROM %s WHERE %s > '' AND %s > ?`,
		q("user_id"), q("n"), t, q("user_id"), q("expires_at"))
	s.sqlUserSessions = fmt.Sprintf(`SELECT %s, %s, %s, %s, %s FROM %s WHERE %s = ? AND %s > ?`,
		q("id"), q("created_at"), q("expires_at"), q("data"), q("user_id"), t, q("user_id"), q("expires_at"))
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
	// Bounded even without a statement timeout: an unreachable database
	// must not stop start-up.
	bound := s.config.Timeout
	if bound <= 0 {
		bound = DefaultDBTimeout
	}
	pingCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	pool, err := s.db.Master()
	if err == nil {
		err = waitBounded(pingCtx, pool.PingContext)
	}
	s.startPinged, s.startPingErr = true, err
	if err != nil {
		startupLogger().Warningf(ctx,
			`gfsession: db storage: the database does not answer (%v): table %s is created on first use`,
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
			return gerror.WrapCodef(gcode.CodeDbOperationError, err,
				`gfsession: db storage: createTable: creating table %s (or create it yourself and set createTable: false)`, s.table)
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
			`gfsession: db storage: the SQLite database is not set up for concurrent requests: add %s to its link, e.g. "sqlite::@file(sessions.db)?%s"`,
			strings.Join(missing, " and "), strings.Join(missing, "&"))
	}
}
