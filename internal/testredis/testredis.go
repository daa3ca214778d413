// Package testredis starts private redis-server processes for tests: a
// standalone server, a Redis Cluster of N masters, or a master/replica pair
// watched by Sentinels. Every process listens on a free 127.0.0.1 port, keeps
// its files (data, AOF, logs, generated configs) in a temporary directory and
// is killed when the test that started it ends, whether it passed or not.
//
// Nothing here uses a Redis that may already run on the machine (6379 or
// elsewhere): tests never depend on the host's services.
//
// # Requirements
//
// redis-server and redis-cli must be on PATH. The helpers use nothing newer
// than Redis 6.0 (tested with 7.0); CI uses what the distribution ships.
// When they are missing the test is skipped with a hint to run
// ./hack/test.sh (which installs them), or fails when the environment
// variable CI is "true": in CI a missing backend is a failure, never a skip.
//
// # Per-test servers
//
//	srv := testredis.Start(t)                                      // standalone
//	srv := testredis.Start(t, testredis.Options{Persistence: true}) // survives Kill/Restart
//	cl := testredis.StartCluster(t, 3)                             // cl.Addrs
//	se := testredis.StartSentinel(t, 2)                            // se.SentinelAddrs, se.MasterName
//
// Start* functions return once the servers answer (readiness is polled,
// never guessed with a sleep) and register a t.Cleanup that kills them. They
// are safe to call from parallel tests.
//
// # One shared server per test binary
//
// Tests that only need "a Redis" can share one standalone server, started on
// first use by [Shared]. Because a t.Cleanup of the first test would stop it
// for every later test, the shared server is stopped by [Main] instead, which
// the package's TestMain must call:
//
//	func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }
//
// [Shared] fails the test when TestMain does not go through [Main], so a
// forgotten TestMain can never leak a process. Tests using the shared server
// must keep to their own keys (e.g. a per-test prefix) and must not FLUSHALL,
// Kill or Restart it; use [Start] for anything destructive.
//
// # Process hygiene
//
// Each redis-server runs in its own process group; killing a Server kills the
// group and waits for the exit. On Linux the processes are also started with
// a parent-death signal (from a dedicated OS thread), so even a test binary
// that panics or is killed by -timeout leaves no redis-server behind.
package testredis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout is how long a server may take to answer PING (and, for the
// cluster and sentinel helpers, to reach a consistent state) before the test
// fails with the tail of its log.
const ReadyTimeout = 10 * time.Second

// Options configures [Start].
type Options struct {
	// Persistence turns on the append-only file with appendfsync always, so
	// that [Server.Kill] (SIGKILL) loses no acknowledged write and
	// [Server.Restart] brings the data back. Without it the server keeps
	// nothing on disk (save "" and appendonly no).
	Persistence bool
	// Args are extra redis-server command-line arguments, appended last (so
	// they override the defaults), e.g. []string{"--maxmemory", "10mb"}.
	Args []string
}

// Server is one private redis-server process on a free 127.0.0.1 port, in its
// own temporary directory.
type Server struct {
	Addr string // "127.0.0.1:PORT"
	Port int
	Dir  string // data directory; also holds redis.log

	mu   sync.Mutex
	argv []string // full redis-server arguments, reused by Restart
	proc *process // nil when not running
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result; read only after done is closed
}

// Available reports whether redis-server and redis-cli are on PATH.
func Available() error {
	var missing []string
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("testredis: %s not found on PATH", strings.Join(missing, " and "))
	}
	return nil
}

// requireAvailable skips (or, under CI=true, fails) the test when the Redis
// binaries are missing.
func requireAvailable(t testing.TB) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: a missing backend is a failure; ./hack/test.sh installs it)", err)
	}
	t.Skipf("%v; run ./hack/test.sh, which installs redis-server and redis-tools", err)
}

// Start starts a standalone redis-server and waits until it answers PING.
// The server is killed when the test ends.
func Start(t testing.TB, opt ...Options) *Server {
	t.Helper()
	requireAvailable(t)
	var o Options
	if len(opt) > 0 {
		o = opt[0]
	}
	s := newServer(t.TempDir())
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("testredis: stopping %s: %v", s.Addr, err)
		}
	})
	// Full syncs start at once instead of after the 5 s diskless delay, so
	// replicas (and failed-over masters) are in sync quickly.
	args := []string{"--repl-diskless-sync-delay", "0"}
	if o.Persistence {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	args = append(args, o.Args...)
	if err := s.start(func(port int) []string { return serverArgs(port, s.Dir, nil, args) }, false); err != nil {
		t.Fatal(err)
	}
	return s
}

func newServer(dir string) *Server { return &Server{Dir: dir} }

// serverArgs builds the redis-server command line: the common safety
// settings first, then extra. pre goes before everything (a config file
// path and --sentinel for sentinels).
func serverArgs(port int, dir string, pre, extra []string) []string {
	a := append([]string{}, pre...)
	a = append(a,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--logfile", "", // stdout, which goes to Dir/redis.log
	)
	return append(a, extra...)
}

// start picks a port, runs redis-server and waits until it is ready. A
// start that loses a race for its port (another process bound it between
// the probe and redis-server's bind) is retried on a new port.
func (s *Server) start(argv func(port int) []string, cluster bool) error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.argv = argv(port)
		s.mu.Unlock()
		inUse, err := s.run()
		if err == nil {
			return nil
		}
		lastErr = err
		if !inUse {
			return err
		}
	}
	return lastErr
}

// run starts s.argv and waits until the process answers PING. inUse reports
// that the process failed because its port was taken.
func (s *Server) run() (inUse bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return false, fmt.Errorf("testredis: %s is already running", s.Addr)
	}
	logPath := filepath.Join(s.Dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return false, fmt.Errorf("testredis: %w", err)
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "### testredis: redis-server %s\n", strings.Join(quoteArgs(s.argv), " "))
	cmd := exec.Command("redis-server", s.argv...)
	cmd.Dir = s.Dir
	cmd.Stdout = logFile // *os.File: no copying goroutines in os/exec
	cmd.Stderr = logFile
	setProcAttr(cmd)
	err = spawn(cmd)
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		return false, fmt.Errorf("testredis: starting redis-server: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	if err := waitReady(s.Addr, p, ReadyTimeout); err != nil {
		killProcess(p)
		s.proc = nil
		tail := logTail(logPath, logStart)
		inUse = strings.Contains(tail, "in use")
		return inUse, fmt.Errorf("testredis: redis-server on %s did not become ready: %v\n--- tail of %s ---\n%s", s.Addr, err, logPath, tail)
	}
	return false, nil
}

// waitReady polls until the server on addr answers PING and reports p's pid
// (so a server of someone else that owns the port does not count).
func waitReady(addr string, p *process, timeout time.Duration) error {
	pid := strconv.Itoa(p.cmd.Process.Pid)
	var lastErr error
	err := poll(timeout, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("redis-server exited: %v", p.err)
		default:
		}
		if _, err := Do(addr, "PING"); err != nil {
			lastErr = err
			return false, nil
		}
		info, err := Do(addr, "INFO", "server")
		if err != nil {
			lastErr = err
			return false, nil
		}
		if got := infoField(info, "process_id"); got != pid {
			lastErr = fmt.Errorf("port answered by process %s, not ours (%s)", got, pid)
			return false, nil
		}
		return true, nil
	})
	if err != nil && lastErr != nil && errors.Is(err, errTimeout) {
		return fmt.Errorf("%w (last error: %v)", err, lastErr)
	}
	return err
}

var errTimeout = errors.New("timed out")

// poll calls f until it returns true or an error, or timeout passes. The
// interval starts at 2 ms and grows to 50 ms.
func poll(timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	interval := 2 * time.Millisecond
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", errTimeout, timeout)
		}
		time.Sleep(interval)
		if interval < 50*time.Millisecond {
			interval *= 2
		}
	}
}

// Kill sends SIGKILL to the server (and its children, e.g. a background
// save) and waits until it has exited. Killing a stopped server is a no-op.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("testredis: killing %s: %v", s.Addr, err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	return killProcess(p)
}

func killProcess(p *process) error {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL) // the process group (Setpgid)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pid %d did not exit 10s after SIGKILL", pid)
	}
}

// Restart starts the server again on the same port, with the same directory
// and arguments, and waits until it answers PING (with Persistence this
// includes loading the AOF). A running server is killed first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("testredis: killing %s: %v", s.Addr, err)
	}
	if _, err := s.run(); err != nil {
		t.Fatal(err)
	}
}

// Pause stops the server with SIGSTOP: connections stay open but nothing is
// answered, which is how a hung backend looks to a client. Resume undoes it;
// cleanup kills a paused server too.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Resume continues a server stopped by Pause.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("testredis: %s is not running", s.Addr)
	}
	if err := syscall.Kill(-s.proc.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("testredis: signal %v to %s: %v", sig, s.Addr, err)
	}
}

// Running reports whether the server process is alive (started and not
// killed by Kill or by itself exiting).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id of the running server, or 0.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// LogTail returns the last few kilobytes of the server's log.
func (s *Server) LogTail() string { return logTail(filepath.Join(s.Dir, "redis.log"), 0) }

// Do sends one command to the server; see the package-level [Do].
func (s *Server) Do(args ...string) (any, error) { return Do(s.Addr, args...) }

// MustDo is Do that fails the test on any error, including an error reply.
func (s *Server) MustDo(t testing.TB, args ...string) any {
	t.Helper()
	v, err := Do(s.Addr, args...)
	if err != nil {
		t.Fatalf("testredis: %s %q: %v", s.Addr, args, err)
	}
	return v
}

// CLI runs redis-cli against the server with args and returns its output
// with surrounding white space trimmed. It fails the test when redis-cli
// exits non-zero. Output follows redis-cli's non-TTY format (raw values, one
// per line).
func (s *Server) CLI(t testing.TB, args ...string) string {
	t.Helper()
	return cli(t, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, args...)...)
}

func cli(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testredis: redis-cli %s: %v\n%s", strings.Join(quoteArgs(args), " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// ---------------------------------------------------------------------------
// Cluster

// Cluster is a Redis Cluster of masters without replicas, all slots assigned.
type Cluster struct {
	Addrs []string // every node's "127.0.0.1:PORT"
	Nodes []*Server
}

// StartCluster starts masters (at least 3) cluster-enabled nodes, joins them
// with `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`
// and waits until every node reports cluster_state:ok and knows every other
// node. The nodes are killed when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	requireAvailable(t)
	if masters < 3 {
		t.Fatalf("testredis: StartCluster needs at least 3 masters, got %d", masters)
	}
	c := &Cluster{}
	var (
		wg   sync.WaitGroup
		errs = make([]error, masters)
	)
	for i := 0; i < masters; i++ {
		s := newServer(t.TempDir())
		t.Cleanup(func() {
			if err := s.stop(); err != nil {
				t.Errorf("testredis: stopping %s: %v", s.Addr, err)
			}
		})
		c.Nodes = append(c.Nodes, s)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.start(func(port int) []string {
				return serverArgs(port, s.Dir, nil, []string{
					"--save", "", "--appendonly", "no",
					"--cluster-enabled", "yes",
					"--cluster-config-file", "nodes.conf",
					"--cluster-node-timeout", "5000",
				})
			}, true)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Nodes {
		c.Addrs = append(c.Addrs, s.Addr)
	}

	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("testredis: redis-cli %s: %v\n%s%s", strings.Join(args, " "), err, out, c.logTails())
	}

	want := strconv.Itoa(masters)
	for _, s := range c.Nodes {
		var last string
		err := poll(ReadyTimeout, func() (bool, error) {
			v, err := s.Do("CLUSTER", "INFO")
			if err != nil {
				last = err.Error()
				return false, nil
			}
			last, _ = v.(string)
			return infoField(v, "cluster_state") == "ok" &&
				infoField(v, "cluster_known_nodes") == want &&
				infoField(v, "cluster_slots_ok") == "16384", nil
		})
		if err != nil {
			t.Fatalf("testredis: cluster node %s not ready: %v\nCLUSTER INFO:\n%s%s", s.Addr, err, last, c.logTails())
		}
	}
	return c
}

// CLI runs `redis-cli -c` (follows MOVED/ASK redirections) against the first
// node; see [Server.CLI].
func (c *Cluster) CLI(t testing.TB, args ...string) string {
	t.Helper()
	return cli(t, append([]string{"-c", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Nodes[0].Port)}, args...)...)
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, s := range c.Nodes {
		fmt.Fprintf(&b, "\n--- log of %s ---\n%s", s.Addr, s.LogTail())
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Sentinel

// Sentinel is a master (with persistence), one replica of it, and Sentinel
// processes monitoring the master under MasterName with quorum 1,
// down-after-milliseconds 500 (see SentinelOptions) and failover-timeout
// 2000.
//
// Master and Replica keep naming the processes they were started as: after a
// failover Replica is the master. Ask the sentinels ([Sentinel.MasterAddr],
// [Sentinel.WaitMaster]) for the current role. Restarting the old master
// after a failover is fine: the sentinels turn it into a replica.
type Sentinel struct {
	MasterName    string
	Master        *Server
	Replica       *Server
	Sentinels     []*Server
	SentinelAddrs []string
}

// DefaultMasterName is the name the sentinels monitor the master under.
const DefaultMasterName = "mymaster"

// SentinelOptions tunes StartSentinel.
type SentinelOptions struct {
	// DownAfter is how long the master may not answer before the sentinels
	// fail over (down-after-milliseconds); 0 means 500ms, for failover tests.
	// Tests that must not see a failover set it well above any stall of a
	// loaded machine, e.g. 10s: with 500ms a starved -race run can make the
	// sentinels promote the replica and lose an unreplicated write.
	DownAfter time.Duration
}

// StartSentinel starts a master, a replica and sentinels Sentinel processes
// (at least 1). It returns once the replica is in sync, every sentinel lists
// the replica as healthy and every sentinel knows all the others, so that a
// failover can start as soon as the master is gone.
func StartSentinel(t testing.TB, sentinels int, opt ...SentinelOptions) *Sentinel {
	t.Helper()
	downAfter := 500 * time.Millisecond
	if len(opt) > 0 && opt[0].DownAfter > 0 {
		downAfter = opt[0].DownAfter
	}
	requireAvailable(t)
	if sentinels < 1 {
		t.Fatalf("testredis: StartSentinel needs at least 1 sentinel, got %d", sentinels)
	}
	se := &Sentinel{MasterName: DefaultMasterName}
	se.Master = Start(t, Options{Persistence: true})
	se.Replica = Start(t, Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(se.Master.Port)}})

	// Sentinels learn replicas from the master's INFO, which they ask for
	// once on connect and then every 10 s: start them only once the replica
	// is attached, or they may not see it for 10 s.
	if err := poll(ReadyTimeout, func() (bool, error) {
		v, err := se.Replica.Do("INFO", "replication")
		return err == nil && infoField(v, "master_link_status") == "up", nil
	}); err != nil {
		t.Fatalf("testredis: replica %s never synced with master %s: %v\n--- replica log ---\n%s", se.Replica.Addr, se.Master.Addr, err, se.Replica.LogTail())
	}

	conf := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d 1
sentinel down-after-milliseconds %[1]s %[3]d
sentinel failover-timeout %[1]s 2000
sentinel parallel-syncs %[1]s 1
`, se.MasterName, se.Master.Port, downAfter.Milliseconds())
	var (
		wg   sync.WaitGroup
		errs = make([]error, sentinels)
	)
	for i := 0; i < sentinels; i++ {
		s := newServer(t.TempDir())
		t.Cleanup(func() {
			if err := s.stop(); err != nil {
				t.Errorf("testredis: stopping %s: %v", s.Addr, err)
			}
		})
		se.Sentinels = append(se.Sentinels, s)
		confPath := filepath.Join(s.Dir, "sentinel.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.start(func(port int) []string {
				return serverArgs(port, s.Dir, []string{confPath, "--sentinel"}, nil)
			}, false)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range se.Sentinels {
		se.SentinelAddrs = append(se.SentinelAddrs, s.Addr)
	}

	for _, s := range se.Sentinels {
		var last string
		err := poll(ReadyTimeout, func() (bool, error) {
			// SLAVES, not REPLICAS (6.2+), so that Redis 6.0 works too.
			replicas, err := s.Do("SENTINEL", "SLAVES", se.MasterName)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			peers, err := s.Do("SENTINEL", "SENTINELS", se.MasterName)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			last = fmt.Sprintf("replicas: %v\nsentinels: %v", replicas, peers)
			seen := false
			for _, r := range asList(replicas) {
				m := asMap(r)
				if m["name"] == se.Replica.Addr && m["flags"] == "slave" && m["master-link-status"] == "ok" {
					seen = true
				}
			}
			return seen && len(asList(peers)) == sentinels-1, nil
		})
		if err != nil {
			t.Fatalf("testredis: sentinel %s never saw replica %s and %d other sentinel(s): %v\n%s\n--- sentinel log ---\n%s",
				s.Addr, se.Replica.Addr, sentinels-1, err, last, s.LogTail())
		}
	}
	return se
}

// MasterAddr returns the master address the first sentinel reports
// (SENTINEL get-master-addr-by-name).
func (se *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	addr, err := masterAddrBy(se.Sentinels[0].Addr, se.MasterName)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	return addr
}

// WaitMaster polls until every sentinel reports the same master address,
// other than notAddr, and that server answers ROLE with "master"; it returns
// that address. Use it after killing the master to wait for the failover.
// The test fails after timeout.
func (se *Sentinel) WaitMaster(t testing.TB, notAddr string, timeout time.Duration) string {
	t.Helper()
	var (
		addr string
		last string
	)
	err := poll(timeout, func() (bool, error) {
		addr = ""
		for _, s := range se.Sentinels {
			a, err := masterAddrBy(s.Addr, se.MasterName)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if a == notAddr || (addr != "" && a != addr) {
				last = fmt.Sprintf("sentinel %s reports %s", s.Addr, a)
				return false, nil
			}
			addr = a
		}
		role, err := Do(addr, "ROLE")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if l := asList(role); len(l) == 0 || l[0] != "master" {
			last = fmt.Sprintf("%s has ROLE %v", addr, role)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		var logs strings.Builder
		for _, s := range se.Sentinels {
			fmt.Fprintf(&logs, "\n--- log of sentinel %s ---\n%s", s.Addr, s.LogTail())
		}
		t.Fatalf("testredis: no master other than %s: %v (last: %s)%s", notAddr, err, last, logs.String())
	}
	return addr
}

func masterAddrBy(sentinelAddr, name string) (string, error) {
	v, err := Do(sentinelAddr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sentinelAddr, err)
	}
	l := asList(v)
	if len(l) != 2 {
		return "", fmt.Errorf("sentinel %s: unexpected reply %v", sentinelAddr, v)
	}
	host, _ := l[0].(string)
	port, _ := l[1].(string)
	return net.JoinHostPort(host, port), nil
}

// ---------------------------------------------------------------------------
// Shared server

var shared struct {
	sync.Mutex
	inMain bool
	srv    *Server
	dir    string
	err    error
}

// Main runs the tests of a package (m.Run) and then stops the server started
// by [Shared], if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }
func Main(m *testing.M) int {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()

	code := m.Run()

	shared.Lock()
	defer shared.Unlock()
	shared.inMain = false
	if shared.srv != nil {
		if err := shared.srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testredis: stopping shared server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		shared.srv = nil
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
		shared.dir = ""
	}
	return code
}

// Shared returns the test binary's shared standalone server (no
// persistence), starting it on first use. It requires TestMain to call
// [Main], which stops the server after all tests. Keep to your own keys and
// never Kill, Restart, Pause or FLUSHALL it.
func Shared(t testing.TB) *Server {
	t.Helper()
	requireAvailable(t)
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatal("testredis.Shared needs TestMain to call testredis.Main: func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }")
	}
	if shared.srv == nil && shared.err == nil {
		dir, err := os.MkdirTemp("", "testredis-shared-")
		if err != nil {
			shared.err = err
		} else {
			shared.dir = dir
			s := newServer(dir)
			if err := s.start(func(port int) []string {
				return serverArgs(port, dir, nil, []string{"--save", "", "--appendonly", "no"})
			}, false); err != nil {
				shared.err = err
			} else {
				shared.srv = s
			}
		}
	}
	if shared.err != nil {
		t.Fatalf("testredis: shared server: %v", shared.err)
	}
	return shared.srv
}

// ---------------------------------------------------------------------------
// Ports

var ports struct {
	sync.Mutex
	used map[int]bool // handed out in this process; never handed out twice
}

// freePort returns a port that was free on 127.0.0.1 a moment ago. For
// cluster nodes the cluster bus port (port+10000) must be free as well.
func freePort(cluster bool) (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	for i := 0; i < 200; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testredis: finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := !ports.used[port]
		if ok && cluster {
			ok = port+10000 <= 65535 && !ports.used[port+10000]
			if ok {
				bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
				if err != nil {
					ok = false
				} else {
					bus.Close()
				}
			}
		}
		l.Close()
		if ok {
			ports.used[port] = true
			if cluster {
				ports.used[port+10000] = true
			}
			return port, nil
		}
	}
	return 0, errors.New("testredis: no free port found")
}

// ---------------------------------------------------------------------------
// Processes

// spawn starts cmd. On Linux it does so from one OS thread locked for the
// life of the test binary: Pdeathsig fires when the thread that started the
// child exits, and Go may end threads, so it must be a thread that never
// does.
func spawn(cmd *exec.Cmd) error {
	if !hasPdeathsig {
		return cmd.Start()
	}
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawner.reqs {
				r.reply <- r.cmd.Start()
			}
		}()
	})
	reply := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd: cmd, reply: reply}
	return <-reply
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

// hasPdeathsig tells whether syscall.SysProcAttr has Pdeathsig (Linux).
var hasPdeathsig = reflect.ValueOf(syscall.SysProcAttr{}).FieldByName("Pdeathsig").IsValid()

// setProcAttr puts the child in its own process group (so Kill reaches its
// forked children) and, where supported, asks the kernel to SIGKILL it when
// the test binary dies. Reflection keeps this file portable across Unixes.
func setProcAttr(cmd *exec.Cmd) {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
	cmd.SysProcAttr = attr
}

// logTail returns up to the last 4 KiB of the file at path, starting no
// earlier than offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 4096
	start := offset
	if fi.Size()-start > max {
		start = fi.Size() - max
	}
	b := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(b, start)
	return string(b[:n])
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return q
}

// ---------------------------------------------------------------------------
// A minimal RESP2 client, enough for readiness checks and test setup.

// Error is an error reply from Redis ("-ERR ...").
type Error string

func (e Error) Error() string { return string(e) }

// Do connects to addr, sends one command and returns the reply: string for
// simple and bulk strings, int64 for integers, nil for null replies, []any
// for arrays. An error reply is returned as an [Error]; network errors as
// themselves. Every call uses a fresh connection and a 5 s deadline.
func Do(addr string, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("testredis: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, Error(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("testredis: bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("testredis: bad array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v, err := readReply(r)
			var re Error
			if errors.As(err, &re) {
				// An error inside an array (e.g. EXEC) is a value, not a failure.
				out = append(out, re)
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("testredis: unexpected reply %q", line)
	}
}

// infoField returns field from an INFO or CLUSTER INFO reply ("k:v" lines).
func infoField(info any, field string) string {
	s, _ := info.(string)
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == field {
			return v
		}
	}
	return ""
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// asMap turns a flat [k1 v1 k2 v2 ...] reply (as SENTINEL REPLICAS returns
// for each entry) into a map of strings.
func asMap(v any) map[string]string {
	l := asList(v)
	m := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		val, _ := l[i+1].(string)
		m[k] = val
	}
	return m
}
