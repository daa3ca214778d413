package gfsession

import (
	"context"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func guardOK(context.Context) (int, error) { return 1, nil }

// guardHang is a statement the database never answers: it returns when the
// test ends.
func guardHang(t *testing.T) func(context.Context) (int, error) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(context.Context) (int, error) { <-release; return 0, context.DeadlineExceeded }
}

// guardPanic runs a statement that panics, as a driver bug would, and
// recovers the panic as ghttp does.
func guardPanic(t *testing.T, g *dbGuard, kind stmtKind) {
	t.Helper()
	assert.Panics(t, func() {
		_, _ = guarded(context.Background(), g, kind, func(context.Context) (int, error) { panic("driver bug") })
	})
}

// A statement run on the caller's goroutine (MySQL, or any driver without
// a Timeout) that panics gives its turns back.
func TestStorageDB_GuardPanicReleasesTurn(t *testing.T) {
	for name, tc := range map[string]struct {
		d       dbDialect
		timeout time.Duration
		kind    stmtKind
	}{
		"mysql":             {dialectMySQL, time.Second, stmtPoint | stmtWrite},
		"sqlite no timeout": {dialectSQLite, -1, stmtPoint | stmtWrite},
	} {
		g := newDBGuard(tc.d, tc.timeout, 1)
		guardPanic(t, g, tc.kind)
		assert.Zero(t, len(g.slots), "%s: the statement turn leaked", name)
		assert.Zero(t, len(g.writer), "%s: the writer turn leaked", name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := guarded(ctx, g, tc.kind, guardOK)
		cancel()
		assert.NoError(t, err, name)
	}
}

// A probe of the open breaker that panics lets the next statement probe:
// the breaker closes once the database answers.
func TestStorageDB_GuardPanickingProbe(t *testing.T) {
	const timeout = 50 * time.Millisecond
	g := newDBGuard(dialectMySQL, timeout, 4)
	ctx := context.Background()
	_, err := guarded(ctx, g, stmtPoint, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
	require.Error(t, err)
	require.NotZero(t, g.openUntil.Load(), "a point statement without an answer did not open the breaker")
	g.openUntil.Store(time.Now().UnixNano()) // the open period is over
	guardPanic(t, g, stmtPoint)
	assert.False(t, g.probing.Load(), "the panicking probe still holds the probe's turn")
	_, err = guarded(ctx, g, stmtPoint, guardOK)
	require.NoError(t, err)
	assert.Zero(t, g.openUntil.Load(), "the breaker stayed open after an answer")
}

// Waiting for a turn behind a slow statement is not a silent database: a
// point statement that got its turn late and then ran into its deadline
// fails, but does not open the breaker.
func TestStorageDB_GuardQueueingKeepsBreakerClosed(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ctx := context.Background()
	for _, d := range []dbDialect{dialectMySQL, dialectPgSQL} {
		g := newDBGuard(d, timeout, 1)
		// A bulk statement holds the only turn for most of its Timeout,
		// and answers.
		running := make(chan struct{})
		bulk := make(chan error, 1)
		go func() {
			_, err := guarded(ctx, g, stmtBulk, func(ctx context.Context) (int, error) {
				close(running)
				time.Sleep(timeout * 4 / 5) // the slow statement's own work
				return 1, nil
			})
			bulk <- err
		}()
		<-running
		_, err := guarded(ctx, g, stmtPoint, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
		require.Error(t, err, "%v", d)
		require.NoError(t, <-bulk, "%v", d)
		assert.Zero(t, g.openUntil.Load(), "%v: queueing opened the breaker", d)
		_, err = guarded(ctx, g, stmtPoint, guardOK)
		assert.NoError(t, err, "%v", d)
	}
}

// A statement that gets no turn within its Timeout says so, and does not
// open the breaker.
func TestStorageDB_GuardNoTurn(t *testing.T) {
	const timeout = 50 * time.Millisecond
	ctx := context.Background()
	g := newDBGuard(dialectMySQL, timeout, 1)
	running, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = guarded(ctx, g, stmtBulk, func(context.Context) (int, error) { close(running); <-release; return 1, nil })
	}()
	<-running
	_, err := guarded(ctx, g, stmtPoint, guardOK)
	close(release)
	<-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no turn to run the statement")
	assert.Zero(t, g.openUntil.Load(), "waiting for a turn opened the breaker")
}

// A statement that runs past its Timeout without an answer gives its turn
// up to the abandoned budget, so that the next statements run; once the
// budget is full it keeps its turn. The probe of the breaker runs even when
// abandoned statements hold every turn.
func TestStorageDB_GuardAbandonedStatements(t *testing.T) {
	const timeout = 30 * time.Millisecond
	ctx := context.Background()
	g := newDBGuard(dialectPgSQL, timeout, 1)
	hang := guardHang(t)
	_, err := guarded(ctx, g, stmtBulk, hang)
	require.Error(t, err)
	assert.Equal(t, 1, len(g.abandoned), "the silent statement is not in the abandoned budget")
	assert.Zero(t, len(g.slots), "the silent statement kept its turn")
	// The budget is full: the next silent statement keeps its turn, and
	// nothing else can run but the probe.
	_, err = guarded(ctx, g, stmtBulk, hang)
	require.Error(t, err)
	assert.Equal(t, 1, len(g.slots))
	_, err = guarded(ctx, g, stmtPoint, guardOK)
	require.Error(t, err, "a statement ran beyond MaxConns and the budget")
	g.openUntil.Store(time.Now().UnixNano()) // an open breaker, due for a probe
	_, err = guarded(ctx, g, stmtPoint, guardOK)
	require.NoError(t, err, "the probe waited for a turn")
	assert.Zero(t, g.openUntil.Load())
}

// Without a Timeout (a negative one) the breaker stays off: a driver's own
// network timeout does not make statements run one at a time.
func TestStorageDB_GuardNoTimeoutNoBreaker(t *testing.T) {
	ctx := context.Background()
	g := newDBGuard(dialectMySQL, -1, 4)
	_, err := guarded(ctx, g, stmtPoint, func(context.Context) (int, error) { return 0, guardNetTimeout{} })
	require.Error(t, err)
	assert.Zero(t, g.openUntil.Load(), "the breaker opened without a Timeout")
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = guarded(ctx, g, stmtPoint, func(context.Context) (int, error) { close(started); <-release; return 1, nil })
	}()
	<-started
	_, err = guarded(ctx, g, stmtPoint, guardOK)
	require.NoError(t, err, "a statement failed fast beside a running one")
}

type guardNetTimeout struct{}

func (guardNetTimeout) Error() string   { return "i/o timeout" }
func (guardNetTimeout) Timeout() bool   { return true }
func (guardNetTimeout) Temporary() bool { return true }

// On SQLite, writers waiting for the writer turn leave the statement turns
// to reads, which WAL runs beside the writer.
func TestStorageDB_GuardSQLiteReadsBesideWriters(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ctx := context.Background()
	g := newDBGuard(dialectSQLite, timeout, 2)
	writing, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = guarded(ctx, g, stmtPoint|stmtWrite, func(context.Context) (int, error) { close(writing); <-release; return 1, nil })
	}()
	<-writing
	// A burst of writers queue for the writer turn.
	for i := 0; i < 4; i++ {
		go func() {
			_, _ = guarded(ctx, g, stmtPoint|stmtWrite, func(context.Context) (int, error) { <-release; return 1, nil })
		}()
	}
	// Reads run meanwhile, each at once.
	for end := time.Now().Add(timeout); time.Now().Before(end); {
		began := time.Now()
		_, err := guarded(ctx, g, stmtPoint, guardOK)
		require.NoError(t, err, "a read waited behind writers")
		require.Less(t, time.Since(began), timeout/2, "a read waited behind writers")
	}
}

// The defaults go after the file(...) part of a SQLite link, where gf reads
// the parameters, and never replace one the link sets.
func TestStorageDB_SQLiteLinkParamsAfterFile(t *testing.T) {
	for link, want := range map[string]string{
		"sqlite::@file(file:s.db?mode=rwc)":                    "sqlite::@file(file:s.db?mode=rwc)?journal_mode=WAL&busy_timeout=5000",
		"sqlite::@file(file:s.db?mode=rwc)?busy_timeout=1000":  "sqlite::@file(file:s.db?mode=rwc)?busy_timeout=1000&journal_mode=WAL",
		"sqlite::@file(file:s.db?mode=rwc)?Busy_Timeout = 100": "sqlite::@file(file:s.db?mode=rwc)?Busy_Timeout = 100&journal_mode=WAL",
	} {
		got := sqliteLinkDefaults(link)
		assert.Equal(t, want, got, link)
		db, err := gdb.New(gdb.ConfigNode{Link: got})
		require.NoError(t, err)
		c := db.GetConfig()
		assert.Equal(t, "file:s.db?mode=rwc", c.Name, link)
		assert.Contains(t, c.Extra, "journal_mode=WAL", link)
	}
}
