package testredis

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// processGone reports whether no process with pid exists any more.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestAvailable(t *testing.T) {
	requireAvailable(t)
	if err := Available(); err != nil {
		t.Fatal(err)
	}
}

func TestStandalone(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || s.Addr != "127.0.0.1:"+strconv.Itoa(s.Port) {
		t.Fatalf("Addr %q, Port %d", s.Addr, s.Port)
	}
	if s.Port == 6379 {
		t.Fatal("must not use the default port")
	}
	if got := s.MustDo(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %v", got)
	}
	if got := s.CLI(t, "PING"); got != "PONG" {
		t.Fatalf("redis-cli PING = %q", got)
	}
	if got := asList(s.MustDo(t, "CONFIG", "GET", "bind")); len(got) != 2 || got[1] != "127.0.0.1" {
		t.Fatalf("bind = %v", got)
	}
	if got := asList(s.MustDo(t, "CONFIG", "GET", "appendonly")); len(got) != 2 || got[1] != "no" {
		t.Fatalf("appendonly = %v", got)
	}
	s.MustDo(t, "SET", "k", "v\r\nwith binary \x00 bytes")
	if got := s.MustDo(t, "GET", "k"); got != "v\r\nwith binary \x00 bytes" {
		t.Fatalf("GET = %q", got)
	}
	if got := s.MustDo(t, "GET", "missing"); got != nil {
		t.Fatalf("GET missing = %v", got)
	}
	if got := s.MustDo(t, "INCR", "n"); got != int64(1) {
		t.Fatalf("INCR = %#v", got)
	}
	var re Error
	if _, err := s.Do("NOSUCHCOMMAND"); !errors.As(err, &re) {
		t.Fatalf("error reply: %v", err)
	}

	pid := s.Pid()
	if !s.Running() || pid == 0 {
		t.Fatal("not running")
	}
	s.Kill(t)
	if s.Running() || !processGone(pid) {
		t.Fatal("still running after Kill")
	}
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Kill(t) // no-op
}

func TestStartWithArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Args: []string{"--maxmemory", "10mb"}})
	if got := asList(s.MustDo(t, "CONFIG", "GET", "maxmemory")); len(got) != 2 || got[1] != "10485760" {
		t.Fatalf("maxmemory = %v", got)
	}
}

func TestCleanupKills(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("inner", func(t *testing.T) {
		pid = Start(t).Pid()
	})
	if pid == 0 || !processGone(pid) {
		t.Fatalf("redis-server %d survived its test", pid)
	}
}

func TestKillRestartPersistence(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Persistence: true})
	addr, dir := s.Addr, s.Dir
	for i := 0; i < 100; i++ {
		s.MustDo(t, "SET", fmt.Sprint("key", i), fmt.Sprint("value", i))
	}
	s.MustDo(t, "HSET", "h", "f", "x")
	s.Kill(t)
	s.Restart(t)
	if s.Addr != addr || s.Dir != dir {
		t.Fatalf("restarted on %s in %s, want %s in %s", s.Addr, s.Dir, addr, dir)
	}
	for i := 0; i < 100; i++ {
		if got := s.MustDo(t, "GET", fmt.Sprint("key", i)); got != fmt.Sprint("value", i) {
			t.Fatalf("key%d = %v after kill -9 and restart", i, got)
		}
	}
	if got := s.MustDo(t, "HGET", "h", "f"); got != "x" {
		t.Fatalf("h.f = %v", got)
	}
	// Restart of a running server kills it first.
	old := s.Pid()
	s.Restart(t)
	if s.Pid() == old || !processGone(old) {
		t.Fatal("Restart of a running server did not replace the process")
	}
}

func TestRestartWithoutPersistenceIsEmpty(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.MustDo(t, "SET", "k", "v")
	s.Restart(t)
	if got := s.MustDo(t, "GET", "k"); got != nil {
		t.Fatalf("k = %v, want nothing kept", got)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Pause(t)
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 16)
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume(t)
	if got := s.MustDo(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %v", got)
	}
}

func TestShared(t *testing.T) {
	t.Parallel()
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	a.MustDo(t, "SET", "testredis:shared", "1")
	if got := b.MustDo(t, "GET", "testredis:shared"); got != "1" {
		t.Fatalf("GET = %v", got)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	if len(c.Addrs) != 3 || len(c.Nodes) != 3 {
		t.Fatalf("Addrs %v", c.Addrs)
	}
	for _, n := range c.Nodes {
		info := n.MustDo(t, "CLUSTER", "INFO")
		if infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_size") != "3" {
			t.Fatalf("%s: %v", n.Addr, info)
		}
	}
	// Keys that hash to slots on different nodes, through redirections.
	for i := 0; i < 10; i++ {
		k := fmt.Sprint("key", i)
		c.CLI(t, "SET", k, "v"+k)
	}
	for i := 0; i < 10; i++ {
		k := fmt.Sprint("key", i)
		if got := c.CLI(t, "GET", k); got != "v"+k {
			t.Fatalf("GET %s = %q", k, got)
		}
	}
	owners := map[string]bool{}
	for _, n := range c.Nodes {
		if v := n.MustDo(t, "DBSIZE"); v.(int64) > 0 {
			owners[n.Addr] = true
		}
	}
	if len(owners) < 2 {
		t.Fatalf("keys landed on %d node(s); slots are not spread", len(owners))
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	se := StartSentinel(t, 2)
	if len(se.SentinelAddrs) != 2 || se.MasterName == "" {
		t.Fatalf("%+v", se)
	}
	if got := se.MasterAddr(t); got != se.Master.Addr {
		t.Fatalf("sentinel master %s, want %s", got, se.Master.Addr)
	}
	se.Master.MustDo(t, "SET", "k", "v")
	if n := se.Master.MustDo(t, "WAIT", "1", "5000"); n != int64(1) {
		t.Fatalf("WAIT = %v", n)
	}

	start := time.Now()
	se.Master.Kill(t)
	got := se.WaitMaster(t, se.Master.Addr, 20*time.Second)
	t.Logf("failover took %v", time.Since(start))
	if got != se.Replica.Addr {
		t.Fatalf("new master %s, want replica %s", got, se.Replica.Addr)
	}
	if v := se.Replica.MustDo(t, "GET", "k"); v != "v" {
		t.Fatalf("k = %v on the new master", v)
	}
	se.Replica.MustDo(t, "SET", "k2", "v2") // writable now
}

// fakeTB records Fatalf/Skipf and stops the call like the real ones do.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

type stopCall struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(stopCall{})
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	panic(stopCall{})
}

func (f *fakeTB) run(fn func(testing.TB)) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopCall); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
}

// Not parallel: it changes PATH for the whole process.
func TestMissingRedis(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if err := Available(); err == nil || !strings.Contains(err.Error(), "redis-server") {
		t.Fatalf("Available() = %v", err)
	}

	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	f.run(requireAvailable)
	if f.fatal != "" || !strings.Contains(f.skip, "hack/test.sh") {
		t.Fatalf("without CI: fatal %q, skip %q", f.fatal, f.skip)
	}

	t.Setenv("CI", "true")
	f = &fakeTB{TB: t}
	f.run(requireAvailable)
	if f.skip != "" || f.fatal == "" {
		t.Fatalf("with CI=true: fatal %q, skip %q", f.fatal, f.skip)
	}
}

func TestReadReplyNested(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.MustDo(t, "RPUSH", "l", "a", "b")
	v := s.MustDo(t, "EVAL", "return {1, 'x', {redis.call('LRANGE', KEYS[1], 0, -1)}, redis.error_reply('E')}", "1", "l")
	l := asList(v)
	if len(l) != 4 || l[0] != int64(1) || l[1] != "x" {
		t.Fatalf("%#v", v)
	}
	if inner := asList(asList(l[2])[0]); len(inner) != 2 || inner[0] != "a" {
		t.Fatalf("%#v", l[2])
	}
	if e, ok := l[3].(Error); !ok || !strings.Contains(string(e), "E") {
		t.Fatalf("%#v", l[3])
	}
}
