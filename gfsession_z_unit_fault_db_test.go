package gfsession_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
)

// The HTTP fault suite on the SQL storage: the clients of the Redis suite
// (faultRun, faultJar, faultCycle) against a server whose StorageDB reaches
// MySQL or PostgreSQL through a tcpproxy.Proxy, which mid-run refuses
// connections ("cut") or stops forwarding on every connection, open or new
// ("blackhole"), for a second or two each.

const (
	// dbFaultTimeout is the storage's Timeout.
	dbFaultTimeout = 400 * time.Millisecond
	// dbFaultMaxLatency bounds every request: a load and a write may each
	// wait one timeout; the rest is slack for -race on a busy machine.
	dbFaultMaxLatency = 4 * dbFaultTimeout
	// dbFaultOutage is the least time each fault lasts.
	dbFaultOutage = 1200 * time.Millisecond
	// dbFaultCut and dbFaultUp are how long each cut, and each time in
	// between, lasts in the "flap" fault, which lasts dbFaultFlapping.
	dbFaultCut, dbFaultUp = 15 * time.Millisecond, 80 * time.Millisecond
	dbFaultFlapping       = 2 * time.Second
)

func TestFault_DB(t *testing.T) {
	for _, dialect := range []string{"mysql", "pgsql"} {
		t.Run(dialect, func(t *testing.T) { runDBFaultScenario(t, dialect, "cut", "blackhole", "flap") })
	}
}

// runDBFaultScenario runs the clients on a StorageDB of `dialect` reached
// through a proxy that goes through `faults` one after the other: "cut"
// (connections closed and refused) or "blackhole" (nothing forwarded, no
// connection closed). Each fault lasts dbFaultOutage and until every user
// has seen requests fail; the next one starts once every user has
// completed cycles again. At the end every jar must read as anonymous:
// a statement the proxy held during the blackhole and delivered afterwards
// must not have brought a session back.
func runDBFaultScenario(t *testing.T, dialect string, faults ...string) {
	link := dbTestLink(t, dialect)
	table := testTable(t, openTestDB(t, link))
	db, proxy := proxiedDB(t, link)
	storage := newDB(t, db, gfsession.DBConfig{
		Table:           table,
		CleanupInterval: -1,
		Timeout:         dbFaultTimeout,
		UserKey:         faultUserKey,
	})
	pool, err := db.Master()
	require.NoError(t, err)
	run := startFaultRun(t, storage, 15*time.Second)
	baseline, baselineConns, baselineProxied := runtime.NumGoroutine(), pool.Stats().OpenConnections, proxy.Conns()
	jars, stopClients := run.startClients(t)
	waitFor := run.waiter(t, 8*time.Second)

	// Every user has done a cycle before the first fault.
	waitFor("cycles before the faults", func() bool { return run.cycles.Load() >= faultUsers })
	for _, fault := range faults {
		failed, outage := run.failures.Load(), time.Now()
		switch fault {
		case "cut":
			proxy.Cut()
		case "blackhole":
			require.NoError(t, proxy.Blackhole())
		case "flap":
			// Connections cut again and again: some requests load the
			// session, then find the database gone when they write it.
			for began := time.Now(); time.Since(began) < dbFaultFlapping; {
				proxy.Cut()
				time.Sleep(dbFaultCut)
				require.NoError(t, proxy.Normal())
				time.Sleep(dbFaultUp)
			}
		default:
			t.Fatalf("unknown fault %q", fault)
		}
		waitFor(fault+": requests failing", func() bool {
			return time.Since(outage) >= dbFaultOutage && run.failures.Load() >= failed+2*faultUsers
		})
		require.NoError(t, proxy.Normal())
		t.Logf("%s: %s: outage of %v, %d failed requests", dialect, fault,
			time.Since(outage).Round(time.Millisecond), run.failures.Load()-failed)
		// Every user completes cycles again after the recovery.
		recovered := run.cycles.Load()
		waitFor(fault+": cycles after the recovery", func() bool { return run.cycles.Load() >= recovered+2*faultUsers })
	}
	stopClients()

	// Every cycle ended with both jars logged out, and stays so.
	for _, pair := range jars {
		for _, j := range pair {
			if user, counter, ok := j.me(); ok && (user != "" || counter != 0) {
				run.violate("%s: logged out, but the session is back after the faults: user %q, counter %d", j.name, user, counter)
			}
		}
	}

	run.mu.Lock()
	violations := run.violations
	run.mu.Unlock()
	assert.Empty(t, violations)
	maxLatency := time.Duration(run.maxLatency.Load())
	t.Logf("%s: %d requests, %d failed, %d cycles, slowest %v", dialect, run.requests.Load(), run.failures.Load(),
		run.cycles.Load(), maxLatency.Round(time.Millisecond))
	assert.Less(t, maxLatency, dbFaultMaxLatency, "every request is bounded by about one storage timeout (%v)", dbFaultTimeout)

	// Nothing waits on the storage any more. The pool may keep more idle
	// connections than at the baseline: each costs the proxy (in this
	// process) two goroutines, and the MySQL driver one more.
	run.transport.CloseIdleConnections()
	allowed := func() int {
		n := baseline + 5 + 2*max(0, proxy.Conns()-baselineProxied)
		if dialect == "mysql" {
			n += max(0, pool.Stats().OpenConnections-baselineConns)
		}
		return n
	}
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= allowed() }, 10*time.Second, 10*time.Millisecond,
		"goroutines back near the baseline of %d plus the pool's connections: %d, at most %d allowed",
		baseline, runtime.NumGoroutine(), allowed())
	t.Logf("%s: goroutines: baseline %d, now %d; pool connections: baseline %d, now %d; proxied: baseline %d, now %d", dialect,
		baseline, runtime.NumGoroutine(), baselineConns, pool.Stats().OpenConnections, baselineProxied, proxy.Conns())
}
