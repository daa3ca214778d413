package gfsession

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

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
var errDBTimeout = errors.New("gfsession: db storage: statement timeout")

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
