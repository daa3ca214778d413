package gfsession_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/gogf/gf/contrib/drivers/mysql/v2"
	_ "github.com/gogf/gf/contrib/drivers/pgsql/v2"
	_ "github.com/gogf/gf/contrib/drivers/sqlite/v2"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

// dbDialects are the databases StorageDB is tested on.
var dbDialects = []string{"mysql", "pgsql", "sqlite"}

// dbTestLink returns the gdb link of the test database of `dialect`:
// GFSESSION_TEST_MYSQL / GFSESSION_TEST_PGSQL (defaults: the local MariaDB and
// PostgreSQL), or a SQLite file in a temporary folder of `t`.
func dbTestLink(t testing.TB, dialect string) string {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	switch dialect {
	case "mysql":
		return env("GFSESSION_TEST_MYSQL", "mysql:root:@tcp(127.0.0.1:3306)/test")
	case "pgsql":
		return env("GFSESSION_TEST_PGSQL", "pgsql:postgres:@tcp(127.0.0.1:5432)/test")
	case "sqlite":
		// WAL and a busy timeout: concurrent writers wait for the write lock
		// instead of failing with SQLITE_BUSY.
		return "sqlite::@file(" + filepath.Join(t.TempDir(), "sessions.db") + ")?busy_timeout=10000&journal_mode=WAL"
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

// openTestDB opens `link` and checks that the database answers: if it does
// not, the test fails under CI=true and is skipped otherwise.
func openTestDB(t testing.TB, link string) gdb.DB {
	t.Helper()
	db, err := gdb.New(gdb.ConfigNode{Link: link})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	if err = db.PingMaster(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("database %s unreachable: %v", link, err)
		}
		t.Skipf("database %s unreachable: %v", link, err)
	}
	return db
}

// testTable returns a table name unique to this run and drops the table when
// `t` ends.
func testTable(t testing.TB, db gdb.DB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "gfs_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_, err := db.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		assert.NoError(t, err, "dropping %s", table)
	})
	return table
}

// newDB returns a StorageDB on `table` of `db`, closed when `t` ends.
func newDB(t testing.TB, db gdb.DB, config gfsession.DBConfig) *gfsession.StorageDB {
	t.Helper()
	s, err := gfsession.NewStorageDB(db, config)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

// putRaw stores `data` as the row of session `id`, bypassing the storage.
func putRaw(t testing.TB, db gdb.DB, table, id string, data []byte, expires time.Time) {
	t.Helper()
	ctx := context.Background()
	_, err := db.Exec(ctx, "DELETE FROM "+table+" WHERE id = ?", id)
	require.NoError(t, err)
	_, err = db.Exec(ctx, "INSERT INTO "+table+" (id, data, expires_at, created_at) VALUES (?, ?, ?, ?)",
		id, data, expires.UnixMilli(), time.Now().UnixMilli())
	require.NoError(t, err)
}

func countRows(t testing.TB, db gdb.DB, table string) int {
	t.Helper()
	v, err := db.GetValue(context.Background(), "SELECT COUNT(*) FROM "+table)
	require.NoError(t, err)
	return v.Int()
}

func TestStorageDB_Conformance(t *testing.T) {
	for _, dialect := range dbDialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			storage := func(t *testing.T, c gfsession.DBConfig) gsession.Storage {
				c.Table = table
				// A cleaner that runs during the suite, deleting what expires.
				c.CleanupInterval = 300 * time.Millisecond
				return newDB(t, db, c)
			}
			copyRow := storagetest.WithCopier(func(t *testing.T, _ gsession.Storage, from, to string) {
				rec, err := db.GetOne(context.Background(), "SELECT data, expires_at FROM "+table+" WHERE id = ?", from)
				require.NoError(t, err)
				require.False(t, rec.IsEmpty(), "no row to copy")
				putRaw(t, db, table, to, rec["data"].Bytes(), time.UnixMilli(rec["expires_at"].Int64()))
			})
			storagetest.Run(t,
				func(t *testing.T) gsession.Storage { return storage(t, gfsession.DBConfig{}) },
				storagetest.DropsStaleWrites(),
				storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
					return storage(t, gfsession.DBConfig{MaxLifetime: d})
				}),
				storagetest.WithCorrupter(func(t *testing.T, _ gsession.Storage, id string, data []byte) {
					putRaw(t, db, table, id, data, time.Now().Add(time.Hour))
				}),
				storagetest.WithCryptoKeys(func(t *testing.T, keys [][]byte) gsession.Storage {
					return storage(t, gfsession.DBConfig{CryptoKeys: keys})
				}),
				storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
					// A table of its own, so that Count is exact.
					return newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), UserKey: userKey})
				}),
				copyRow,
				storagetest.RequireAll(),
			)
			// The same with TouchInterval, which changes the refresh path.
			t.Run("TouchInterval", func(t *testing.T) {
				storagetest.Run(t, func(t *testing.T) gsession.Storage {
					return storage(t, gfsession.DBConfig{TouchInterval: 20 * time.Millisecond})
				}, storagetest.DropsStaleWrites(), storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
					return storage(t, gfsession.DBConfig{MaxLifetime: d, TouchInterval: 20 * time.Millisecond})
				}), storagetest.WithCorrupter(func(t *testing.T, _ gsession.Storage, id string, data []byte) {
					putRaw(t, db, table, id, data, time.Now().Add(time.Hour))
				}), storagetest.WithCryptoKeys(func(t *testing.T, keys [][]byte) gsession.Storage {
					return storage(t, gfsession.DBConfig{CryptoKeys: keys, TouchInterval: 20 * time.Millisecond})
				}), storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
					return newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), UserKey: userKey, TouchInterval: 20 * time.Millisecond})
				}), copyRow, storagetest.RequireAll())
			})
		})
	}
}

// TestStorageDB_Rows checks what the storage does to its table: one row per
// session, the expiry column moved by read-only requests without rewriting
// data, TouchInterval, and the row deleted when the session is emptied.
func TestStorageDB_Rows(t *testing.T) {
	for _, dialect := range dbDialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			row := func(id string) (data []byte, expires, created int64) {
				rec, err := db.GetOne(ctx, "SELECT data, expires_at, created_at FROM "+table+" WHERE id = ?", id)
				require.NoError(t, err)
				if rec.IsEmpty() {
					return nil, 0, 0
				}
				return rec["data"].Bytes(), rec["expires_at"].Int64(), rec["created_at"].Int64()
			}

			s := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1})
			m := gsession.New(time.Hour, s)
			id := gfsession.NewSessionId()
			session := m.New(ctx, id)
			require.NoError(t, session.Set("user", "ann"))
			require.NoError(t, session.Close())
			data1, exp1, created1 := row(id)
			require.NotEmpty(t, data1)
			assert.InDelta(t, time.Now().Add(time.Hour).UnixMilli(), exp1, 5000)
			assert.InDelta(t, time.Now().UnixMilli(), created1, 5000)

			// Read-only: expiry moves, data stays byte for byte.
			require.Eventually(t, func() bool { return time.Now().UnixMilli() > exp1-time.Hour.Milliseconds()+2 }, time.Second, time.Millisecond)
			session = m.New(ctx, id)
			assert.Equal(t, "ann", session.MustGet("user").String())
			require.NoError(t, session.Close())
			data2, exp2, created2 := row(id)
			assert.Equal(t, data1, data2, "a read-only request rewrote the data")
			assert.Greater(t, exp2, exp1, "a read-only request did not refresh the expiry")
			assert.Equal(t, created1, created2)

			// A write keeps the creation time.
			session = m.New(ctx, id)
			require.NoError(t, session.Set("n", 1))
			require.NoError(t, session.Close())
			_, _, created3 := row(id)
			assert.Equal(t, created1, created3, "a write moved the creation time")

			// TouchInterval: refreshes within the interval write nothing.
			touchy := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, CreateTable: new(bool), TouchInterval: time.Minute})
			tm := gsession.New(time.Hour, touchy)
			_, exp4, _ := row(id)
			for i := 0; i < 3; i++ {
				session = tm.New(ctx, id)
				assert.Equal(t, "ann", session.MustGet("user").String())
				require.NoError(t, session.Close())
			}
			_, exp5, _ := row(id)
			assert.Equal(t, exp4, exp5, "TouchInterval: a refresh within the interval wrote the expiry")
			// ... and a shorter TTL never shortens the stored expiry.
			require.NoError(t, touchy.UpdateTTL(ctx, id, time.Minute))
			_, exp6, _ := row(id)
			assert.Equal(t, exp4, exp6)
			// One that moves it by more than the interval writes.
			require.NoError(t, touchy.UpdateTTL(ctx, id, 3*time.Hour))
			_, exp7, _ := row(id)
			assert.Greater(t, exp7, exp4)

			// Emptying the session deletes the row.
			session = m.New(ctx, id)
			require.NoError(t, session.Remove("user", "n"))
			require.NoError(t, session.Close())
			data, _, _ := row(id)
			assert.Nil(t, data, "an empty session left its row")
			assert.Equal(t, 0, countRows(t, db, table))
		})
	}
}

// TestStorageDB_Cleaner fills the table with 100k expired rows and checks that
// the cleaner deletes them all in batches while a live session keeps being
// read, and that Close stops it.
func TestStorageDB_Cleaner(t *testing.T) {
	for _, dialect := range dbDialects {
		// One dialect at a time: each keeps the two cores busy.
		t.Run(dialect, func(t *testing.T) {
			expired := 100_000
			if dialect == "sqlite" && raceEnabled {
				// SQLite runs as Go code, instrumented under -race: 100k rows
				// take minutes there; without -race this test uses 100k.
				expired = 10_000
			}
			ctx := context.Background()
			db := openTestDB(t, dbTestLink(t, dialect))
			table := testTable(t, db)
			plain := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1})

			start := time.Now()
			fillExpired(t, db, table, expired)
			t.Logf("%s: inserted %d expired rows in %v", dialect, expired, time.Since(start).Round(time.Millisecond))

			m := gsession.New(time.Hour, plain)
			live := gfsession.NewSessionId()
			write := m.New(ctx, live)
			require.NoError(t, write.Set("user", "ann"))
			require.NoError(t, write.Close())
			require.Equal(t, expired+1, countRows(t, db, table))

			// Readers of the live session, all along the cleanup.
			var (
				stop    = make(chan struct{})
				wg      sync.WaitGroup
				reads   atomic.Int64
				maxRead atomic.Int64
				readErr = make(chan error, 1)
			)
			for r := 0; r < 2; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						began := time.Now()
						s := m.New(ctx, live)
						v, err := s.Get("user")
						if err == nil {
							err = s.Close()
						}
						if err == nil && (v == nil || v.String() != "ann") {
							err = fmt.Errorf("live session lost: %v", v)
						}
						if err != nil {
							select {
							case readErr <- err:
							default:
							}
							return
						}
						reads.Add(1)
						if d := int64(time.Since(began)); d > maxRead.Load() {
							maxRead.Store(d)
						}
					}
				}()
			}

			start = time.Now()
			cleaner := newDB(t, db, gfsession.DBConfig{Table: table, CreateTable: new(bool), CleanupInterval: 20 * time.Millisecond})
			require.Eventually(t, func() bool { return countRows(t, db, table) == 1 }, 60*time.Second, 20*time.Millisecond,
				"the cleaner did not delete the expired rows")
			took := time.Since(start)
			close(stop)
			wg.Wait()
			select {
			case err := <-readErr:
				t.Fatalf("reading the live session during cleanup: %v", err)
			default:
			}
			t.Logf("%s: cleaner deleted %d rows in %v; %d reads of the live session meanwhile, slowest %v",
				dialect, expired, took.Round(time.Millisecond), reads.Load(), time.Duration(maxRead.Load()).Round(time.Microsecond))
			assert.Positive(t, reads.Load())
			assert.Equal(t, "ann", m.New(ctx, live).MustGet("user").String())

			// Close stops the cleaner (and is idempotent).
			require.NoError(t, cleaner.Close(ctx))
			require.NoError(t, cleaner.Close(ctx))
			putRaw(t, db, table, "leftover", []byte{0}, time.Now().Add(-time.Hour))
			time.Sleep(100 * time.Millisecond) // 5 cleaner intervals: nothing may happen
			assert.Equal(t, 2, countRows(t, db, table), "the cleaner ran after Close")
			n, err := cleaner.Cleanup(ctx)
			require.NoError(t, err)
			assert.EqualValues(t, 1, n)
		})
	}
}

// fillExpired inserts `n` (<= 100000) expired rows with one INSERT ... SELECT
// from a cross join of digits, which every dialect runs in about a second
// (row-by-row inserts through gdb take minutes).
func fillExpired(t testing.TB, db gdb.DB, table string, n int) {
	digits := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	seq := "SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d AS n FROM " +
		digits + " a, " + digits + " b, " + digits + " c, " + digits + " e, " + digits + " f"
	id, bigint := "'expired' || s.n", "CAST(? AS BIGINT)"
	if db.GetConfig().Type == "mysql" {
		id, bigint = "CONCAT('expired', s.n)", "?"
	}
	past := time.Now().Add(-time.Hour).UnixMilli()
	_, err := db.Exec(context.Background(),
		"INSERT INTO "+table+" (id, data, expires_at, created_at) SELECT "+id+", ?, "+bigint+" - s.n, "+bigint+" - s.n FROM ("+seq+") s WHERE s.n < ?",
		[]byte{0}, past, past, n)
	require.NoError(t, err)
}

// tcpProxy forwards loopback connections to a database, and can refuse or
// black-hole them to simulate an outage.
type tcpProxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	hold   bool // accept connections but never answer
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = true
			hold := p.hold
			p.mu.Unlock()
			if hold {
				continue
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[u] = true
	p.mu.Unlock()
	go p.copy(u, c)
	p.copy(c, u)
}

// copy forwards `src` to `dst` until either closes; while the proxy holds,
// what it reads is dropped, as in a network partition.
func (p *tcpProxy) copy(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hold := p.hold
			p.mu.Unlock()
			if !hold {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// down closes the listener and every connection: the database is gone.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// blackhole stops forwarding on every connection, old and new, without
// closing any: a database (or network) that hangs.
func (p *tcpProxy) blackhole() {
	p.mu.Lock()
	p.hold = true
	p.mu.Unlock()
}

// up serves again on the same address.
func (p *tcpProxy) up(t *testing.T) {
	p.down()
	p.mu.Lock()
	p.hold = false
	p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.serve(ln)
}

var linkAddr = regexp.MustCompile(`@tcp\(([^)]*)\)`)

// TestStorageDB_Outage runs the storage through a proxy that is closed, then
// black-holed, then restored: requests fail with an error, within the
// storage's timeout, and succeed again on the same storage once the database
// is back.
func TestStorageDB_Outage(t *testing.T) {
	for _, dialect := range []string{"mysql", "pgsql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			link := dbTestLink(t, dialect)
			direct := openTestDB(t, link)
			table := testTable(t, direct)
			match := linkAddr.FindStringSubmatch(link)
			require.NotNil(t, match, "link %q has no @tcp(host:port)", link)
			proxy := newTCPProxy(t, match[1])
			proxied := strings.Replace(link, match[0], "@tcp("+proxy.addr+")", 1)
			db, err := gdb.New(gdb.ConfigNode{Link: proxied})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close(context.Background()) })

			const timeout = 500 * time.Millisecond
			s := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, Timeout: timeout})
			m := gsession.New(time.Hour, s)
			ctx := context.Background()
			id := gfsession.NewSessionId()
			session := m.New(ctx, id)
			require.NoError(t, session.Set("user", "ann"))
			require.NoError(t, session.Close())

			read := func() (string, error) {
				s := m.New(ctx, id)
				v, err := s.Get("user")
				if err != nil {
					return "", err
				}
				if err = s.Close(); err != nil {
					return "", err
				}
				return v.String(), nil
			}
			writeKey := func() error {
				s := m.New(ctx, id)
				if err := s.Set("k", time.Now().UnixNano()); err != nil {
					return err
				}
				return s.Close()
			}
			v, err := read()
			require.NoError(t, err)
			require.Equal(t, "ann", v)

			for _, outage := range []struct {
				name  string
				start func()
			}{{"refused", proxy.down}, {"hanging", proxy.blackhole}} {
				outage.start()
				for i := 0; i < 3; i++ {
					began := time.Now()
					_, err := read()
					assert.Error(t, err, "%s: read %d during the outage", outage.name, i)
					assert.Error(t, writeKey(), "%s: write %d during the outage", outage.name, i)
					took := time.Since(began)
					assert.Less(t, took, 4*timeout+2*time.Second, "%s: requests hung during the outage", outage.name)
					t.Logf("%s: %s outage: read+write failed in %v: %v", dialect, outage.name, took.Round(time.Millisecond), err)
				}
				proxy.up(t)
				var recovered time.Duration
				began := time.Now()
				require.Eventually(t, func() bool {
					v, err := read()
					return err == nil && v == "ann"
				}, 15*time.Second, 20*time.Millisecond, "%s: the storage did not recover", outage.name)
				recovered = time.Since(began)
				for i := 0; i < 20; i++ {
					v, err := read()
					require.NoError(t, err, "%s: after recovery", outage.name)
					require.Equal(t, "ann", v)
					require.NoError(t, writeKey())
				}
				t.Logf("%s: recovered from the %s outage in %v", dialect, outage.name, recovered.Round(time.Millisecond))
			}
		})
	}
}

func TestStorageDB_Config(t *testing.T) {
	ctx := context.Background()
	link := dbTestLink(t, "sqlite")

	t.Run("link", func(t *testing.T) {
		st, err := gfsession.New(ctx, map[string]any{
			"type": "db", "link": link, "table": "from_config", "cleanupInterval": "off",
			"maxLifetime": "1h", "touchInterval": "1m", "cleanupBatch": 10, "codec": "json", "userKey": "uid", "timeout": "2s",
		})
		require.NoError(t, err)
		require.IsType(t, &gfsession.StorageDB{}, st)
		m := gsession.New(time.Hour, st)
		id := gfsession.NewSessionId()
		s := m.New(ctx, id)
		require.NoError(t, s.Set("a", 1))
		require.NoError(t, s.Close())
		assert.EqualValues(t, 1, m.New(ctx, id).MustGet("a").Int())
		require.NoError(t, st.(*gfsession.StorageDB).Close(ctx))
		require.NoError(t, st.(*gfsession.StorageDB).Close(ctx))
	})
	t.Run("negative cleanupInterval", func(t *testing.T) {
		st, err := gfsession.New(ctx, map[string]any{"type": "db", "link": link, "table": "no_cleaner", "cleanupInterval": "-1s", "timeout": "-1s"})
		require.NoError(t, err)
		require.NoError(t, st.(*gfsession.StorageDB).Close(ctx))
	})
	t.Run("createTable false", func(t *testing.T) {
		st, err := gfsession.New(ctx, map[string]any{"type": "db", "link": link, "table": "not_created", "createTable": false})
		require.NoError(t, err)
		db := openTestDB(t, link)
		_, err = db.GetValue(ctx, "SELECT COUNT(*) FROM not_created")
		assert.Error(t, err, "createTable: false created the table")
		_, err = st.GetSession(ctx, gfsession.NewSessionId(), time.Hour)
		assert.Error(t, err, "a missing table must be an error, not no session")
		require.NoError(t, st.(*gfsession.StorageDB).Close(ctx))
	})
	t.Run("database group", func(t *testing.T) {
		group := "gfsession_test_" + hex.EncodeToString([]byte(t.Name()))[:8]
		require.NoError(t, gdb.SetConfigGroup(group, gdb.ConfigGroup{{Link: link}}))
		st, err := gfsession.New(ctx, map[string]any{"type": "db", "database": group, "table": "by_group"})
		require.NoError(t, err)
		require.NoError(t, st.(*gfsession.StorageDB).Close(ctx))
	})
	errs := []struct {
		name   string
		config map[string]any
		want   []string
	}{
		{"unknown key", map[string]any{"link": link, "tabel": "x"}, []string{"sessionStorage.tabel", "table"}},
		{"no database", map[string]any{"database": "gfsession_no_such_group"}, []string{"sessionStorage.database", "gfsession_no_such_group"}},
		{"both", map[string]any{"database": "a", "link": link}, []string{"sessionStorage", "not both"}},
		{"bad type", map[string]any{"link": "oracle:u:p@tcp(127.0.0.1:1521)/x"}, []string{"sessionStorage.link", "oracle", "mysql, mariadb, pgsql, sqlite"}},
		{"bad table", map[string]any{"link": link, "table": "x; DROP TABLE y"}, []string{"table", "x; DROP TABLE y"}},
		{"bare duration", map[string]any{"link": link, "touchInterval": 60}, []string{"sessionStorage.touchInterval", "unit"}},
		{"bad createTable", map[string]any{"link": link, "createTable": "maybe"}, []string{"sessionStorage.createTable"}},
		{"bad cleanupInterval", map[string]any{"link": link, "cleanupInterval": "-5"}, []string{"sessionStorage.cleanupInterval", "unit"}},
		{"negative touchInterval", map[string]any{"link": link, "touchInterval": "-1m"}, []string{"sessionStorage.touchInterval", "negative"}},
		{"bad link", map[string]any{"link": 42}, []string{"sessionStorage.link"}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			config := map[string]any{"type": "db"}
			for k, v := range tt.config {
				config[k] = v
			}
			st, err := gfsession.New(ctx, config)
			require.Error(t, err)
			assert.Nil(t, st)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestStorageDB_NewErrors(t *testing.T) {
	db := openTestDB(t, dbTestLink(t, "sqlite"))
	for _, table := range []string{"", "1abc", "a-b", "a.b", `a"b`, "a`b", strings.Repeat("x", 53)} {
		if table == "" {
			continue // the default
		}
		_, err := gfsession.NewStorageDB(db, gfsession.DBConfig{Table: table})
		assert.Error(t, err, "table %q", table)
	}
	_, err := gfsession.NewStorageDB(nil)
	assert.Error(t, err)
	_, err = gfsession.NewStorageDB(db, gfsession.DBConfig{CryptoKeys: [][]byte{[]byte("short")}})
	assert.Error(t, err)
	s, err := gfsession.NewStorageDB(db, gfsession.DBConfig{CleanupInterval: -1})
	require.NoError(t, err)
	require.NoError(t, s.Close(context.Background()))
}

// TestStorageDB_ServerConfigFile runs a gf server whose config file picks the
// db storage with `database: <group>`, the group being defined in the same
// file's `database:` node (read through gf's g.DB machinery), and drives it
// over HTTP.
func TestStorageDB_ServerConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sessions.db")
	var b [4]byte
	_, _ = rand.Read(b[:])
	group := "gfsession_e2e_" + hex.EncodeToString(b[:])
	useConfigFile(t, fmt.Sprintf(`database:
  %[1]s:
    link: "sqlite::@file(%[2]s)?busy_timeout=10000&journal_mode=WAL"
server:
  e2e-db:
    address: "127.0.0.1:0"
    dumpRouterMap: false
    sessionMaxAge: "10m"
    sessionStorage:
      type: db
      database: %[1]s
      table: e2e_sessions
      touchInterval: "1m"
`, group, file))
	base := startSessionApp(t, "e2e-db")
	alice, bob := newClient(t, base), newClient(t, base)
	alice.do(http.MethodPost, "/login?user=alice")
	bob.do(http.MethodPost, "/login?user=bob")
	for i := 1; i <= 3; i++ {
		assert.EqualValues(t, i, alice.do(http.MethodPost, "/counter")["counter"])
	}
	user, counter := alice.me()
	assert.Equal(t, "alice", user)
	assert.EqualValues(t, 3, counter)
	user, _ = bob.me()
	assert.Equal(t, "bob", user)
	alice.do(http.MethodPost, "/logout")
	user, _ = alice.me()
	assert.Empty(t, user)

	// The sessions are rows of the table in the group's database.
	db, err := gdb.Instance(group)
	require.NoError(t, err)
	assert.Equal(t, 1, countRows(t, db, "e2e_sessions"), "bob's session")
}

// TestStorageDB_ReadsFromMaster checks that sessions are read from the
// group's master node. gdb sends reads to a slave node when the group has
// one, and a replica lags: a session just written (at login) would read as
// missing, one just destroyed as present. The "slave" here is a database of
// its own that never receives the writes: the lag at its worst.
func TestStorageDB_ReadsFromMaster(t *testing.T) {
	ctx := context.Background()
	master, slave := dbTestLink(t, "sqlite"), dbTestLink(t, "sqlite")
	// The replica has the table (replicated DDL) but none of the rows.
	newDB(t, openTestDB(t, slave), gfsession.DBConfig{CleanupInterval: -1})
	group := fmt.Sprintf("reads-from-master-%d", time.Now().UnixNano())
	require.NoError(t, gdb.SetConfigGroup(group, gdb.ConfigGroup{{Link: master, Role: "master"}, {Link: slave, Role: "slave"}}))
	db, err := gdb.Instance(group)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(ctx) })
	st := newDB(t, db, gfsession.DBConfig{CleanupInterval: -1})
	m := gsession.New(time.Hour, st)

	s := m.New(ctx, "")
	require.NoError(t, s.Set("user", "ann"))
	id := s.MustId()
	require.NoError(t, s.Close())
	s = m.New(ctx, id)
	assert.Equal(t, "ann", s.MustGet("user").String(), "a session just written reads back")
	require.NoError(t, s.Close())
	n, err := st.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	var ids []string
	require.NoError(t, st.Range(ctx, func(sessionId string) bool { ids = append(ids, sessionId); return true }))
	assert.Equal(t, []string{id}, ids)
}

// TestStorageDB_WriteAfterIdleExpiry checks that a request whose session's
// idle TTL ran out while it ran still writes: GetSession does not move the
// expiry (the end of the request does), so a user back just before the TTL
// with a slower request would otherwise lose the write and the session.
func TestStorageDB_WriteAfterIdleExpiry(t *testing.T) {
	for _, dialect := range dbDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dbTestLink(t, dialect))
			st := newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), CleanupInterval: -1})
			const ttl = 300 * time.Millisecond
			m := gsession.New(ttl, st)
			ctx := context.Background()
			s := m.New(ctx, "")
			require.NoError(t, s.Set("n", 1))
			id := s.MustId()
			require.NoError(t, s.Close())

			s = m.New(ctx, id)
			require.Equal(t, 1, s.MustGet("n").Int(), "loaded before the TTL ran out")
			time.Sleep(ttl + 50*time.Millisecond) // the request runs past the idle TTL
			require.NoError(t, s.Set("n", 2))
			require.NoError(t, s.Close())

			s = m.New(ctx, id)
			assert.Equal(t, 2, s.MustGet("n").Int(), "the write of an active session was lost")
			require.NoError(t, s.Close())
		})
	}
}

// TestStorageDB_DestroyUserDuringSlowRequest checks that DestroyUser also
// deletes a row past its idle TTL that the cleaner has not deleted yet: a
// request that loaded it before the TTL ran out may still write it, and
// would otherwise log the user back in.
func TestStorageDB_DestroyUserDuringSlowRequest(t *testing.T) {
	for _, dialect := range dbDialects {
		t.Run(dialect, func(t *testing.T) {
			db := openTestDB(t, dbTestLink(t, dialect))
			st := newDB(t, db, gfsession.DBConfig{Table: testTable(t, db), CleanupInterval: -1, UserKey: "uid"})
			const ttl = 300 * time.Millisecond
			m := gsession.New(ttl, st)
			ctx := context.Background()
			s := m.New(ctx, "")
			require.NoError(t, s.Set("uid", "alice"))
			id := s.MustId()
			require.NoError(t, s.Close())

			s = m.New(ctx, id)
			require.Equal(t, "alice", s.MustGet("uid").String())
			time.Sleep(ttl + 50*time.Millisecond) // the request runs past the idle TTL
			n, err := st.DestroyUser(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			require.NoError(t, s.Set("n", 2))
			require.NoError(t, s.Close())

			data, err := st.GetSession(ctx, id, ttl)
			require.NoError(t, err)
			assert.True(t, data == nil || data.Size() == 0, "alice's session survived DestroyUser")
		})
	}
}
