package gfsession

import (
	"context"
	"fmt"
	"strings"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/gogf/gf/v2/util/gconv"
	"github.com/gogf/gf/v2/util/gutil"
)

// init registers the storage type TypeDB.
func init() {
	Register(TypeDB, configFactory(newStorageDBFromConfig, "database", "link"))
}

// normalize checks `c` and applies its defaults: DefaultDBTable for an empty
// Table, true for a nil CreateTable, and DefaultDBCleanupInterval,
// DefaultDBCleanupBatch, DefaultDBTimeout and DefaultDBMaxConns for the
// options left at 0. A Table that is not a plain identifier, a negative
// CleanupBatch, MaxConns, MaxLifetime or TouchInterval, an unknown Codec
// and a bad crypto key are errors naming the option, "gfsession: db
// storage: <key>: ...". A negative CleanupInterval (no cleaner) or Timeout
// (no bound) is kept.
func (c *DBConfig) normalize() error {
	if c.Table == "" {
		c.Table = DefaultDBTable
	}
	if !isDBIdentifier(c.Table) {
		return configError(TypeDB, "table",
			`%q is not a plain table name: use a letter or '_' followed by up to %d letters, digits or '_'`,
			c.Table, dbMaxTableName-1)
	}
	if c.CreateTable == nil {
		c.CreateTable = new(bool)
		*c.CreateTable = true
	}
	for _, err := range []error{
		notNegative(TypeDB, "maxConns", c.MaxConns),
		notNegative(TypeDB, "maxLifetime", c.MaxLifetime),
		notNegative(TypeDB, "touchInterval", c.TouchInterval),
		limitNeedsUserKey(TypeDB, c.MaxSessionsPerUser, c.UserKey),
	} {
		if err != nil {
			return err
		}
	}
	c.CleanupInterval = orDefault(c.CleanupInterval, DefaultDBCleanupInterval)
	if c.CleanupBatch <= 0 {
		c.CleanupBatch = DefaultDBCleanupBatch
	}
	c.Timeout = orDefault(c.Timeout, DefaultDBTimeout)
	c.MaxConns = orDefault(c.MaxConns, DefaultDBMaxConns)
	_, err := newStorageEnvelope(TypeDB, c.Codec, c.CryptoKeys)
	return err
}

// newStorageDBFromConfig builds a StorageDB from a config map decoded into
// `config`, with `rest` holding either `database` (a group of gf's
// `database:` config node) or `link` (a gdb link such as
// "mysql:root:@tcp(127.0.0.1:3306)/test"). A bad config fails before the
// database is opened; a DB opened here is the storage's, closed by its
// Close.
func newStorageDBFromConfig(ctx context.Context, config DBConfig, rest map[string]any) (gsession.Storage, error) {
	if err := config.normalize(); err != nil {
		return nil, err
	}
	db, owned, err := dbFromConfig(ctx, rest)
	if err != nil {
		return nil, err
	}
	s, err := NewStorageDB(db, config)
	if err != nil {
		if owned {
			_ = db.Close(ctx)
		}
		if gerror.Code(err) != gcode.CodeInvalidConfiguration {
			// The table could not be created at start: from a config file,
			// a set-up to fix (a privilege, or createTable: false).
			err = gerror.WrapCode(gcode.CodeInvalidConfiguration, err)
		}
		return nil, err
	}
	s.ownsDB = owned
	return s, nil
}

// dbFromConfig opens the database that the `database` or `link` key of
// `rest` names (see newStorageDBFromConfig): gf's default group when it has
// neither. `owned` reports a DB opened for the storage.
func dbFromConfig(ctx context.Context, rest map[string]any) (db gdb.DB, owned bool, err error) {
	var group, link, groupKey, linkKey string
	for k, v := range rest {
		str, ok := v.(string)
		if !ok {
			return nil, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`%s.%s: want a string, got %v (%T)`, configPath, k, v, v)
		}
		if strings.EqualFold(k, "database") {
			group, groupKey = str, k
		} else {
			link, linkKey = str, k
		}
	}
	switch {
	case groupKey != "" && linkKey != "":
		return nil, false, gerror.NewCodef(gcode.CodeInvalidConfiguration,
			`%s: set either "database" (a group of the database config) or "link", not both`, configPath)
	case linkKey != "":
		if db, err = openDBLink(link); err != nil {
			return nil, false, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, linkKey)
		}
		return db, true, nil
	}
	if groupKey == "" {
		groupKey = "database"
	}
	if db, owned, err = openDBGroup(ctx, group); err != nil {
		return nil, false, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `%s.%s`, configPath, groupKey)
	}
	return db, owned, nil
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
