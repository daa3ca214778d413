package gfsession_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

// The HTTP fault suite: a ghttp server with gfsession.Middleware on a Redis
// storage, concurrent clients with cookie jars logging in, counting, logging
// out and logging out everywhere, while the private redis-server under it is
// killed and restarted, or stopped (SIGSTOP) and resumed.

const (
	// faultTimeout is the Redis client's dial, read, write and pool timeout.
	faultTimeout = 300 * time.Millisecond
	// faultMaxLatency bounds every request: a load and a write may each
	// wait one timeout; the rest is slack for -race on a busy machine.
	faultMaxLatency = 4 * faultTimeout
	faultUsers      = 6 // concurrent users, each with two cookie jars
	faultIncrements = 4 // increments per user per cycle
	faultUserKey    = "uid"
)

func TestFault_Redis(t *testing.T) {
	for _, kind := range redisKinds {
		t.Run(kind, func(t *testing.T) { runFaultScenario(t, kind, "kill", "pause", "kill", "pause") })
	}
}

// startFaultApp starts a server whose handlers answer 503 with the error
// when a session call fails (never panicking), and returns its base URL.
func startFaultApp(t *testing.T, storage redisStorage) string {
	t.Helper()
	admin, ok := storage.(gfsession.Admin)
	require.True(t, ok, "%T implements Admin", storage)
	s := g.Server(fmt.Sprintf("fault-%s-%d", t.Name(), time.Now().UnixNano()))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetAccessLogEnabled(false)
	s.SetSessionStorage(storage)
	s.Use(gfsession.Middleware)
	fail := func(r *ghttp.Request, err error) bool {
		if err != nil {
			r.Response.WriteStatus(http.StatusServiceUnavailable, err.Error())
		}
		return err != nil
	}
	s.Group("/", func(group *ghttp.RouterGroup) {
		group.POST("/login", func(r *ghttp.Request) {
			if _, err := gfsession.Regenerate(r); fail(r, err) {
				return
			}
			if fail(r, r.Session.Set(faultUserKey, r.Get("user").String())) {
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
		group.GET("/me", func(r *ghttp.Request) {
			user, err := r.Session.Get(faultUserKey)
			if fail(r, err) {
				return
			}
			counter, err := r.Session.Get("counter")
			if fail(r, err) {
				return
			}
			r.Response.WriteJson(g.Map{"user": user.String(), "counter": counter.Int64()})
		})
		group.POST("/incr", func(r *ghttp.Request) {
			counter, err := r.Session.Get("counter")
			if fail(r, err) || fail(r, r.Session.Set("counter", counter.Int64()+1)) {
				return
			}
			r.Response.WriteJson(g.Map{"counter": counter.Int64() + 1})
		})
		group.POST("/logout", func(r *ghttp.Request) {
			if fail(r, r.Session.RemoveAll()) {
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
		// An administrator signs a user out everywhere. It takes the user
		// from the query, not from the caller's session: a retry after a
		// failure that destroyed some of the sessions (the caller's among
		// them) must still reach the rest.
		group.POST("/destroy-user", func(r *ghttp.Request) {
			if _, err := admin.DestroyUser(r.Context(), r.Get("user").String()); fail(r, err) {
				return
			}
			r.Response.WriteJson(g.Map{"ok": true})
		})
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	return fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())
}

// startFaultRun starts the fault app on `storage` and warms it up
// (connections, scripts, and gf's default logger, which reads the
// configuration when first used and would hold up the first requests that
// log); it returns with no client connection open, for a goroutine
// baseline. No client step retries past `budget` from now.
func startFaultRun(t *testing.T, storage redisStorage, budget time.Duration) *faultRun {
	t.Helper()
	run := &faultRun{
		base:      startFaultApp(t, storage),
		transport: &http.Transport{MaxIdleConnsPerHost: 2 * faultUsers},
		deadline:  time.Now().Add(budget),
	}
	t.Cleanup(run.transport.CloseIdleConnections)
	g.Log()
	warmA, warmB := run.newJar("warm-a"), run.newJar("warm-b")
	require.True(t, faultCycle(warmA, warmB, "warm", false))
	require.True(t, faultCycle(warmA, warmB, "warm", true))
	require.Empty(t, run.violations)
	run.transport.CloseIdleConnections()
	return run
}

// startClients starts faultUsers users, each cycling (faultCycle) on two
// jars of its own until stopped, and returns the jars and the function
// that stops the clients and waits for them (also called when `t` ends).
func (f *faultRun) startClients(t *testing.T) (jars [][2]*faultJar, stop func()) {
	var (
		stopped atomic.Bool
		wg      sync.WaitGroup
	)
	jars = make([][2]*faultJar, faultUsers)
	for u := range jars {
		user := fmt.Sprintf("user%d", u)
		jars[u] = [2]*faultJar{f.newJar(user + "-a"), f.newJar(user + "-b")}
		wg.Add(1)
		go func(a, b *faultJar) {
			defer wg.Done()
			for n := 0; !stopped.Load() && n < 1000; n++ {
				if !faultCycle(a, b, user, n%2 == 1) {
					return
				}
			}
		}(jars[u][0], jars[u][1])
	}
	stop = func() {
		stopped.Store(true)
		wg.Wait()
	}
	t.Cleanup(stop) // also when a check fails
	return jars, stop
}

// waiter returns a function that polls `cond` for at most `timeout` and
// fails `t` with the run's counts when it does not hold by then.
func (f *faultRun) waiter(t *testing.T, timeout time.Duration) func(what string, cond func() bool) {
	return func(what string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, timeout, 5*time.Millisecond, "%s (%d cycles, %d requests, %d failed)",
			what, f.cycles.Load(), f.requests.Load(), f.failures.Load())
	}
}

// faultRun is what the clients of one scenario saw.
type faultRun struct {
	base      string
	transport *http.Transport
	deadline  time.Time // no step retries past it

	requests, failures atomic.Int64 // answered, and answered with an error status
	cycles             atomic.Int64 // complete login ... logout cycles
	maxLatency         atomic.Int64 // nanoseconds

	mu         sync.Mutex
	violations []string
}

func (f *faultRun) violate(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.violations) < 20 {
		f.violations = append(f.violations, fmt.Sprintf(format, args...))
	}
}

// faultJar is one browser: a cookie jar on the run's shared transport.
type faultJar struct {
	run  *faultRun
	name string
	http *http.Client
}

func (f *faultRun) newJar(name string) *faultJar {
	jar, _ := cookiejar.New(nil)
	return &faultJar{run: f, name: name, http: &http.Client{Jar: jar, Transport: f.transport, Timeout: 10 * time.Second}}
}

// do sends one request and returns its status (0: no answer) and JSON body.
func (j *faultJar) do(method, path string) (int, map[string]any) {
	f := j.run
	start := time.Now()
	req, _ := http.NewRequest(method, f.base+path, nil)
	resp, err := j.http.Do(req)
	if err != nil {
		f.violate("%s %s %s: no answer: %v", j.name, method, path, err)
		return 0, nil
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	elapsed := time.Since(start)
	for {
		old := f.maxLatency.Load()
		if int64(elapsed) <= old || f.maxLatency.CompareAndSwap(old, int64(elapsed)) {
			break
		}
	}
	f.requests.Add(1)
	if err != nil {
		f.violate("%s %s %s: reading the answer: %v", j.name, method, path, err)
		return 0, nil
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			f.violate("%s %s %s: %v: %s", j.name, method, path, err, raw)
		}
		return http.StatusOK, body
	case http.StatusServiceUnavailable:
		// The storage failed and said so.
	default:
		// 500 is a panic ghttp recovered, or an error the storage should
		// not have had.
		f.violate("%s %s %s: %d %s", j.name, method, path, resp.StatusCode, raw)
	}
	f.failures.Add(1)
	return resp.StatusCode, nil
}

// until repeats a request while it is answered 503 and returns its body
// once it is answered 200. It returns nil on any other answer (do recorded
// it as a violation) or when the run's deadline passed first.
func (j *faultJar) until(method, path string) map[string]any {
	for time.Now().Before(j.run.deadline) {
		switch status, body := j.do(method, path); status {
		case http.StatusOK:
			return body
		case http.StatusServiceUnavailable:
		default:
			return nil
		}
	}
	j.run.violate("%s %s %s: no 200 before the deadline", j.name, method, path)
	return nil
}

// me returns the user and counter the jar's session holds.
func (j *faultJar) me() (user string, counter int64, ok bool) {
	body := j.until(http.MethodGet, "/me")
	if body == nil {
		return "", 0, false
	}
	c, _ := body["counter"].(float64)
	return fmt.Sprint(body["user"]), int64(c), true
}

// faultCycle logs user `user` in on both jars, counts on the first, checks
// that every acknowledged increment is stored, and logs out: the first jar
// alone, or (`everywhere`) every session of the user with DestroyUser,
// through the second jar. The jars that were logged out must read as
// anonymous afterwards.
func faultCycle(a, b *faultJar, user string, everywhere bool) bool {
	f := a.run
	if a.until(http.MethodPost, "/login?user="+user) == nil || b.until(http.MethodPost, "/login?user="+user) == nil {
		return false
	}
	var acked, attempted int64
	for i := 0; i < faultIncrements; i++ {
		attempted++
		if status, _ := a.do(http.MethodPost, "/incr"); status == http.StatusOK {
			acked++
		}
	}
	got, counter, ok := a.me()
	if !ok {
		return false
	}
	if got != user {
		f.violate("%s: logged in as %q, reads %q", a.name, user, got)
	}
	if counter < acked || counter > attempted {
		f.violate("%s: %d increments answered 200 (of %d sent), the session holds %d", a.name, acked, attempted, counter)
	}

	loggedOut := []*faultJar{a}
	if everywhere {
		loggedOut = append(loggedOut, b)
		if b.until(http.MethodPost, "/destroy-user?user="+user) == nil {
			return false
		}
	} else if a.until(http.MethodPost, "/logout") == nil {
		return false
	}
	for _, j := range loggedOut {
		got, counter, ok = j.me()
		if !ok {
			return false
		}
		if got != "" || counter != 0 {
			f.violate("%s: logged out (everywhere: %v), but the session is back: user %q, counter %d", j.name, everywhere, got, counter)
		}
	}
	if !everywhere {
		// The second jar still holds its session: end it too, so that every
		// cycle starts from anonymous jars.
		if b.until(http.MethodPost, "/logout") == nil {
			return false
		}
	}
	f.cycles.Add(1)
	return true
}

// runFaultScenario runs the clients on a `kind` storage while Redis goes
// through `faults` one after the other: "kill" (SIGKILL, then a restart
// that reloads the append-only file) or "pause" (SIGSTOP, then SIGCONT).
// Each fault lasts until every user has seen requests fail, and the next
// one starts once every user has completed cycles again.
func runFaultScenario(t *testing.T, kind string, faults ...string) {
	srv := testredis.Start(t, testredis.Options{Persistence: true}) // appendfsync always: a kill loses no acknowledged write
	client := newGredis(t, &gredis.Config{
		Address:      srv.Addr,
		DialTimeout:  faultTimeout,
		ReadTimeout:  faultTimeout,
		WriteTimeout: faultTimeout,
		WaitTimeout:  faultTimeout,
	})
	storage := newRedisStorage(t, kind, client, gfsession.RedisConfig{UserKey: faultUserKey})
	run := startFaultRun(t, storage, 20*time.Second)
	baseline := runtime.NumGoroutine()
	_, stopClients := run.startClients(t)
	waitFor := run.waiter(t, 15*time.Second)

	// Every user has done a cycle before the first fault.
	waitFor("cycles before the faults", func() bool { return run.cycles.Load() >= faultUsers })
	for _, fault := range faults {
		failed := run.failures.Load()
		switch fault {
		case "kill":
			srv.Kill(t)
		case "pause":
			srv.Pause(t)
		default:
			t.Fatalf("unknown fault %q", fault)
		}
		outage := time.Now()
		waitFor(fault+": requests failing", func() bool { return run.failures.Load() >= failed+2*faultUsers })
		if fault == "kill" {
			srv.Restart(t)
		} else {
			srv.Resume(t)
		}
		t.Logf("%s: outage of %v, %d failed requests", fault, time.Since(outage).Round(time.Millisecond), run.failures.Load()-failed)
		// Every user completes cycles again after the recovery.
		recovered := run.cycles.Load()
		waitFor(fault+": cycles after the recovery", func() bool { return run.cycles.Load() >= recovered+2*faultUsers })
	}
	stopClients()

	run.mu.Lock()
	violations := run.violations
	run.mu.Unlock()
	assert.Empty(t, violations)
	maxLatency := time.Duration(run.maxLatency.Load())
	t.Logf("%d requests, %d failed, %d cycles, slowest %v", run.requests.Load(), run.failures.Load(), run.cycles.Load(), maxLatency.Round(time.Millisecond))
	assert.Less(t, maxLatency, faultMaxLatency, "every request is bounded by about one storage timeout (%v)", faultTimeout)

	// Nothing waits on the storage any more.
	run.transport.CloseIdleConnections()
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+5 }, 10*time.Second, 10*time.Millisecond,
		"goroutines back near the baseline of %d", baseline)
	t.Logf("goroutines: baseline %d, now %d", baseline, runtime.NumGoroutine())
}
