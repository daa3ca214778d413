package gfsession_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/gogf/gf/contrib/drivers/mysql/v2"
	_ "github.com/gogf/gf/contrib/drivers/pgsql/v2"
	_ "github.com/gogf/gf/contrib/drivers/sqlite/v2"
	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/tcpproxy"
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

// putRaw stores `data` as the row of session `id` (keyed by its handle),
// bypassing the storage.
func putRaw(t testing.TB, db gdb.DB, table, id string, data []byte, expires time.Time) {
	t.Helper()
	ctx := context.Background()
	id = gfsession.Handle(id)
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
				rec, err := db.GetOne(context.Background(), "SELECT data, expires_at FROM "+table+" WHERE id = ?", gfsession.Handle(from))
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
				rec, err := db.GetOne(ctx, "SELECT data, expires_at, created_at FROM "+table+" WHERE id = ?", gfsession.Handle(id))
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

			// Close stops the cleaner (TestStorageDB_CloseStopsCleaner checks
			// that nothing of it runs after Close returns) and is
			// idempotent; Cleanup still works.
			require.NoError(t, cleaner.Close(ctx))
			require.NoError(t, cleaner.Close(ctx))
			putRaw(t, db, table, "leftover", []byte{0}, time.Now().Add(-time.Hour))
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

var linkAddr = regexp.MustCompile(`@tcp\(([^)]*)\)`)

// proxiedDB returns a gdb.DB for the database of `link` reached through a
// tcpproxy.Proxy, and the proxy.
func proxiedDB(t *testing.T, link string) (gdb.DB, *tcpproxy.Proxy) {
	match := linkAddr.FindStringSubmatch(link)
	require.NotNil(t, match, "link %q has no @tcp(host:port)", link)
	proxy, err := tcpproxy.New(match[1])
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	db, err := gdb.New(gdb.ConfigNode{Link: strings.Replace(link, match[0], "@tcp("+proxy.Addr()+")", 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return db, proxy
}

// TestStorageDB_Outage runs the storage through a proxy that refuses
// connections, then black-holes them (a database or network that stops
// answering), then works again. During the outage every request fails with
// an error within about one Timeout (a request's load and its write do not
// wait twice), concurrent requests pile up neither goroutines nor
// connections, and afterwards the same storage works again by itself and
// its goroutines are gone.
func TestStorageDB_Outage(t *testing.T) {
	for _, dialect := range []string{"mysql", "pgsql"} {
		t.Run(dialect, func(t *testing.T) {
			link := dbTestLink(t, dialect)
			table := testTable(t, openTestDB(t, link))
			db, proxy := proxiedDB(t, link)
			const (
				timeout  = 400 * time.Millisecond
				maxConns = 8
				clients  = 16
			)
			s := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, Timeout: timeout, MaxConns: maxConns})
			m := gsession.New(time.Hour, s)
			ctx := context.Background()
			id := gfsession.NewSessionId()
			session := m.New(ctx, id)
			require.NoError(t, session.Set("user", "ann"))
			require.NoError(t, session.Close())
			pool, err := db.Master()
			require.NoError(t, err)

			// request is one login-style request: it reads a key of the
			// session, writes one (a handler that goes on after a failed
			// read: gf's Session loads again) and closes the session.
			request := func() (string, error) {
				s := m.New(ctx, id)
				v, getErr := s.Get("user")
				setErr := s.Set("seen", time.Now().UnixNano())
				if err := errors.Join(getErr, setErr, s.Close()); err != nil {
					return "", err
				}
				return v.String(), nil
			}
			v, err := request()
			require.NoError(t, err)
			require.Equal(t, "ann", v)
			baseline := runtime.NumGoroutine()

			for _, outage := range []struct {
				name  string
				start func() error
			}{
				{"cut", func() error { proxy.Cut(); return nil }},
				{"blackhole", proxy.Blackhole},
			} {
				require.NoError(t, outage.start())
				var (
					wg                     sync.WaitGroup
					requests, slow         atomic.Int64
					maxGoroutines, maxOpen atomic.Int64
					maxProxied             atomic.Int64
					slowest                atomic.Int64
				)
				peak := func(v *atomic.Int64, n int64) {
					for cur := v.Load(); n > cur && !v.CompareAndSwap(cur, n); cur = v.Load() {
					}
				}
				end := time.Now().Add(4 * timeout)
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(end) {
							began := time.Now()
							_, err := request()
							took := time.Since(began)
							assert.Error(t, err, "%s: a request succeeded during the outage", outage.name)
							requests.Add(1)
							peak(&slowest, int64(took))
							// Two loads (gf's Session loads again after a
							// failed load) before the breaker trips, each
							// bounded by the timeout, and scheduling slack on
							// two loaded cores.
							if took > timeout*5/2 {
								slow.Add(1)
							}
							peak(&maxGoroutines, int64(runtime.NumGoroutine()))
							peak(&maxOpen, int64(pool.Stats().OpenConnections))
							peak(&maxProxied, int64(proxy.Conns()))
							// A client's think time: requests that fail
							// fast must not starve the two cores.
							time.Sleep(5 * time.Millisecond)
						}
					}()
				}
				wg.Wait()
				t.Logf("%s: %s: %d failed requests, slowest %v; at most %d goroutines (baseline %d), %d open connections, %d proxied connections",
					dialect, outage.name, requests.Load(), time.Duration(slowest.Load()).Round(time.Millisecond),
					maxGoroutines.Load(), baseline, maxOpen.Load(), maxProxied.Load())
				assert.Zero(t, slow.Load(), "%s: requests waited longer than about one timeout (slowest %v)",
					outage.name, time.Duration(slowest.Load()))
				// MaxConns statements in their turns, as many abandoned at
				// their timeout, and the breaker's probe.
				const running = 2*maxConns + 1
				assert.LessOrEqual(t, maxOpen.Load(), int64(running), "%s: open connections", outage.name)
				// Each statement holds at most a connection and, on
				// PostgreSQL, a cancel connection.
				assert.LessOrEqual(t, maxProxied.Load(), int64(2*running+2), "%s: proxied connections", outage.name)
				// The clients, plus per statement running the statement's
				// goroutine and the driver's watcher and cancel goroutines.
				assert.LessOrEqual(t, maxGoroutines.Load(), int64(baseline+clients+4*running+10), "%s: goroutines", outage.name)

				require.NoError(t, proxy.Normal())
				began := time.Now()
				require.Eventually(t, func() bool {
					v, err := request()
					return err == nil && v == "ann"
				}, 5*time.Second, 10*time.Millisecond, "%s: the storage did not recover", outage.name)
				t.Logf("%s: recovered from the %s in %v", dialect, outage.name, time.Since(began).Round(time.Millisecond))
				for i := 0; i < 10; i++ {
					v, err := request()
					require.NoError(t, err, "%s: after recovery", outage.name)
					require.Equal(t, "ann", v)
				}
				require.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+5 }, 5*time.Second, 10*time.Millisecond,
					"%s: goroutines after recovery: %d, baseline %d", outage.name, runtime.NumGoroutine(), baseline)
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
			"maxLifetime": "1h", "touchInterval": "1m", "cleanupBatch": 10, "codec": "json", "userKey": "uid", "timeout": "2s", "maxConns": 8,
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
		{"negative maxConns", map[string]any{"link": link, "maxConns": -1}, []string{"sessionStorage.maxConns"}},
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
	db := openTestDB(t, "sqlite::@file("+file+")?busy_timeout=10000&journal_mode=WAL")
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
	assert.Equal(t, []string{gfsession.Handle(id)}, ids)
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

// TestStorageDB_SQLiteConcurrentLogins runs 100 clients that log in at once
// (a write) and read their session back (a read and an expiry refresh) on a
// file-backed SQLite database, both through a config map `link` that sets
// nothing (the storage adds WAL and a busy timeout) and through a gdb.DB of
// the application: every request succeeds.
func TestStorageDB_SQLiteConcurrentLogins(t *testing.T) {
	const clients = 100
	for _, tc := range []struct {
		name    string
		storage func(t *testing.T) gsession.Storage
	}{
		{"link", func(t *testing.T) gsession.Storage {
			st, err := gfsession.New(context.Background(), map[string]any{
				"type": "db", "link": "sqlite::@file(" + filepath.Join(t.TempDir(), "sessions.db") + ")", "cleanupInterval": "off",
			})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, st.(*gfsession.StorageDB).Close(context.Background())) })
			return st
		}},
		{"gdb.DB", func(t *testing.T) gsession.Storage {
			return newDB(t, openTestDB(t, dbTestLink(t, "sqlite")), gfsession.DBConfig{CleanupInterval: -1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := gsession.New(time.Hour, tc.storage(t))
			ctx := context.Background()
			var (
				wg        sync.WaitGroup
				start     = make(chan struct{})
				latencies = make([]time.Duration, clients)
			)
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					began := time.Now()
					defer func() { latencies[i] = time.Since(began) }()
					s := m.New(ctx, "")
					if !assert.NoError(t, s.Set("user", i)) || !assert.NoError(t, s.Close()) {
						return
					}
					id, err := s.Id()
					require.NoError(t, err)
					s = m.New(ctx, id)
					v, err := s.Get("user")
					if assert.NoError(t, err, "client %d: reading", i) && assert.NotNil(t, v, "client %d: session lost", i) {
						assert.Equal(t, i, v.Int())
					}
					assert.NoError(t, s.Close())
				}()
			}
			close(start)
			wg.Wait()
			slices.Sort(latencies)
			t.Logf("%d concurrent logins + reads: p50 %v, p99 %v, max %v", clients,
				latencies[clients/2].Round(time.Millisecond), latencies[clients*99/100-1].Round(time.Millisecond),
				latencies[clients-1].Round(time.Millisecond))
			// Writers take turns in arrival order: the last waits for the
			// 99 before it, not for SQLite's busy handler to let it in.
			assert.Less(t, latencies[clients*99/100-1], 3*time.Second, "p99")
		})
	}
}

// TestStorageDB_NilData checks that writing nil session data is an error,
// not a panic.
func TestStorageDB_NilData(t *testing.T) {
	st := newDB(t, openTestDB(t, dbTestLink(t, "sqlite")), gfsession.DBConfig{CleanupInterval: -1})
	var err error
	require.NotPanics(t, func() { err = st.SetSession(context.Background(), gfsession.NewSessionId(), nil, time.Hour) })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nil")
}

// TestStorageDB_IdsShortened checks that the error messages and log lines
// of the storage never hold a whole session id (a bearer token): failing
// statements, a session sealed with an old key that cannot be resealed, and
// a corrupt row.
func TestStorageDB_IdsShortened(t *testing.T) {
	ctx := context.Background()
	logged := captureLog(t)

	db := openTestDB(t, dbTestLink(t, "sqlite"))
	table := testTable(t, db)
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	id := gfsession.NewSessionId()
	assertShort := func(what, text string) {
		t.Helper()
		assert.NotContains(t, text, id, "%s holds the whole session id", what)
		assert.Contains(t, text, gfsession.Handle(id)[:8], "%s does not name the session by its handle", what)
	}

	// An old key's session read by a storage with a new first key is
	// resealed; the table refuses updates, so that fails and logs.
	old := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, CryptoKeys: [][]byte{oldKey}})
	require.NoError(t, old.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "ann"}), time.Hour))
	_, err := db.Exec(ctx, "CREATE TRIGGER "+table+"_ro BEFORE UPDATE ON "+table+" BEGIN SELECT RAISE(ABORT, 'read-only'); END")
	require.NoError(t, err)
	st := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, CryptoKeys: [][]byte{newKey, oldKey}})
	data, err := st.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	require.NotNil(t, data)
	require.Contains(t, logged.String(), "read-only", "the reseal did not fail")
	assertShort("the reseal warning", logged.String())

	// A corrupt row reads as no session, with a warning.
	putRaw(t, db, table, id, []byte("garbage"), time.Now().Add(time.Hour))
	data, err = st.GetSession(ctx, id, time.Hour)
	require.NoError(t, err)
	assert.Nil(t, data)
	assertShort("the corrupt-session warning", logged.String())

	// Every statement fails once the table is gone.
	_, err = db.Exec(ctx, "DROP TABLE "+table)
	require.NoError(t, err)
	_, err = st.GetSession(ctx, id, time.Hour)
	require.Error(t, err)
	assertShort("the load error", err.Error())
	err = st.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"user": "ann"}), time.Hour)
	require.Error(t, err)
	assertShort("the write error", err.Error())
	err = st.UpdateTTL(ctx, id, time.Hour)
	require.Error(t, err)
	assertShort("the refresh error", err.Error())
	err = st.RemoveAll(ctx, id)
	require.Error(t, err)
	assertShort("the delete error", err.Error())
	err = st.SetSession(ctx, id, nil, time.Hour)
	require.Error(t, err)
	assertShort("the nil data error", err.Error())
	assert.NotContains(t, logged.String(), id)
}

// TestStorageDB_DatabaseDownAtStart checks that NewStorageDB, which creates
// the table, does not fail while the database cannot be reached (a
// connection refused, or no answer at all), so that a server starts during
// an outage: it returns within about one Timeout, requests fail with an
// error while the database is down, and once it is back the first request
// creates the table and the session round-trips, on the same storage.
func TestStorageDB_DatabaseDownAtStart(t *testing.T) {
	for _, dialect := range []string{"mysql", "pgsql"} {
		for _, mode := range []string{"cut", "blackhole"} {
			t.Run(dialect+"/"+mode, func(t *testing.T) {
				link := dbTestLink(t, dialect)
				direct := openTestDB(t, link)
				table := testTable(t, direct)
				db, proxy := proxiedDB(t, link)
				if mode == "cut" {
					proxy.Cut()
				} else {
					require.NoError(t, proxy.Blackhole())
				}
				const timeout = 300 * time.Millisecond
				start := time.Now()
				s, err := gfsession.NewStorageDB(db, gfsession.DBConfig{Table: table, CleanupInterval: -1, Timeout: timeout})
				require.NoError(t, err, "a database outage must not stop start-up")
				t.Cleanup(func() { assert.NoError(t, s.Close(context.Background())) })
				assert.Less(t, time.Since(start), 3*timeout, "construction waits at most about one Timeout")

				ctx := context.Background()
				id := gfsession.NewSessionId()
				data := gmap.NewStrAnyMapFrom(map[string]any{"user": "ann"}, true)
				_, err = s.GetSession(ctx, id, time.Minute)
				assert.Error(t, err, "loading while the database is down")
				assert.Error(t, s.SetSession(ctx, id, data, time.Minute), "storing while the database is down")

				require.NoError(t, proxy.Normal())
				require.NoError(t, s.SetSession(ctx, id, data, time.Minute), "the first request once the database is back")
				got, err := s.GetSession(ctx, id, time.Minute)
				require.NoError(t, err)
				require.NotNil(t, got)
				assert.Equal(t, "ann", got.Get("user"))
				assert.Equal(t, 1, countRows(t, direct, table))
			})
		}
	}
}
