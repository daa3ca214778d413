// Command bench measures gfsession's storages side by side with gf's
// built-in storages of the same kind, in one run, and writes the report:
//
//	cd hack/bench && go run .
//
// It runs, in order:
//
//  1. `go test -run '^$' -bench BenchmarkLifecycle -benchmem -cpu 1,2
//     -count 3` in the module root (the session lifecycle through
//     gsession.Manager, see gfsession_z_bench_test.go; the median of the
//     three runs of each row is reported); its output goes to
//     results/lifecycle.txt;
//  2. `go test -run '^$' -bench BenchmarkPeer -benchmem -cpu 1 -count 5`
//     in this folder (gfsession next to alexedwards/scs v2, see
//     peer_test.go); its output goes to results/peer.txt;
//  3. an HTTP load run: for each storage (memory, file, redis, redis-hash;
//     gfsession and gf) a real ghttp server on 127.0.0.1 with a read-only
//     endpoint (GET: 3 session reads) and a writing one (POST: 1 session
//     write), driven for a fixed time by a fixed number of keep-alive
//     connections, one pre-logged-in session (cookie) each, plus two
//     baselines: a handler doing one raw Redis GET through the same gredis
//     client (the physical limit of the Redis rows) and one touching no
//     session; Redis rows run against a private redis-server this program
//     starts (found on PATH) and count commands with INFO commandstats.
//     Every case runs -rounds times (5), the rounds interleaved, and the
//     median run of each case is kept. Results go to results/http.json;
//  4. the report: docs/benchmarks.md, docs/benchmarks.png and the block
//     between <!-- BENCHMARKS --> and <!-- /BENCHMARKS --> in README.md.
//
// All traffic stays on 127.0.0.1; every loop is bounded in time. Flags
// shorten the run (-duration, -benchtime) or redo only the report from
// saved results (-skip-gotest, -skip-peer, -skip-http).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/gogf/gf/contrib/nosql/redis/v2"
	"github.com/gogf/gf/v2/database/gredis"
)

type options struct {
	root        string
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	benchtime   string
	count       int
	benchFilter string
	cpu         string
	skipGoTest  bool
	skipPeer    bool
	skipHTTP    bool
	only        string
	cpuProfile  string
	rounds      int
}

func main() {
	var o options
	flag.StringVar(&o.root, "root", "../..", "module root of gfsession")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "measured time of each HTTP load run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up time before each HTTP load run")
	flag.IntVar(&o.concurrency, "concurrency", 32, "virtual users (connections, sessions) of each HTTP load run")
	flag.StringVar(&o.benchtime, "benchtime", "300ms", "go test -benchtime")
	flag.IntVar(&o.count, "count", 5, "go test -count: every benchmark runs this many times in a row and its median run is reported")
	flag.StringVar(&o.benchFilter, "bench", "BenchmarkLifecycle|BenchmarkManagerFloor", "go test -bench")
	flag.StringVar(&o.cpu, "cpu", "1,2", "go test -cpu")
	flag.BoolVar(&o.skipGoTest, "skip-gotest", false, "reuse results/lifecycle.txt")
	flag.BoolVar(&o.skipPeer, "skip-peer", false, "reuse results/peer.txt")
	flag.BoolVar(&o.skipHTTP, "skip-http", false, "reuse results/http.json")
	flag.StringVar(&o.only, "only", "", "HTTP cases whose backend/impl/size/endpoint contains this (for trying out)")
	flag.IntVar(&o.rounds, "rounds", 5, "HTTP rounds: every case runs this many times, interleaved, and its median run (by req/s) is reported")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the HTTP runs (server and load generator) to this file")
	flag.Parse()
	log.SetFlags(log.Ltime)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options) error {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("-root %s: not the module root: %w", root, err)
	}
	results := filepath.Join(root, "hack", "bench", "results")
	if err := os.MkdirAll(results, 0o755); err != nil {
		return err
	}
	lifecyclePath := filepath.Join(results, "lifecycle.txt")
	httpPath := filepath.Join(results, "http.json")
	machinePath := filepath.Join(results, "machine.json")
	peerPath := filepath.Join(results, "peer.txt")

	goTestArgs := []string{"test", "-run", "^$", "-bench", o.benchFilter, "-benchmem",
		"-cpu", o.cpu, "-benchtime", o.benchtime, "-count", strconv.Itoa(o.count), "-timeout", "150m", "."}

	var m machine
	if o.skipGoTest && o.skipPeer && o.skipHTTP {
		if err := readJSON(machinePath, &m); err != nil {
			return err
		}
	} else {
		m = describeMachine()
	}

	if !o.skipGoTest {
		m.GoTestDate = m.Date
		m.GoTestCommand = "go " + shellJoin(goTestArgs)
		m.Load = loadAvg()
		log.Printf("go %s", strings.Join(goTestArgs, " "))
		started := time.Now()
		if err := runGoTest(ctx, root, goTestArgs, lifecyclePath, os.Stdout); err != nil {
			return err
		}
		m.GoTestMinutes = time.Since(started).Minutes()
		m.LoadAfterGoTest = loadAvg()
	}

	if !o.skipPeer {
		peerArgs := []string{"test", "-run", "^$", "-bench", "BenchmarkPeer", "-benchmem",
			"-cpu", "1", "-benchtime", o.benchtime, "-count", strconv.Itoa(o.count), "-timeout", "30m", "."}
		m.PeerCommand = "go " + shellJoin(peerArgs)
		log.Printf("go %s", strings.Join(peerArgs, " "))
		started := time.Now()
		if err := runGoTest(ctx, filepath.Join(root, "hack", "bench"), peerArgs, peerPath, os.Stdout); err != nil {
			return err
		}
		m.PeerMinutes = time.Since(started).Minutes()
	}

	if !o.skipHTTP {
		started := time.Now()
		srv, err := startRedis(ctx)
		if err != nil {
			return err
		}
		defer srv.stop()
		m.RedisVersion = srv.version
		client, err := gredis.New(&gredis.Config{Address: srv.addr, MaxActive: 256, MaxIdle: 256})
		if err != nil {
			return err
		}
		defer client.Close(ctx)
		tmp, err := os.MkdirTemp("", "gfsession-bench-http-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		env := &httpEnv{redis: srv, client: client, tmp: tmp, blobSize: map[string]int64{}}
		if o.cpuProfile != "" {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		if o.rounds < 1 {
			o.rounds = 1
		}
		m.HTTP = fmt.Sprintf("%d connections (one session each), %v warm-up, %v measured per run, %d rounds (the median run of each case)",
			o.concurrency, o.warmup, o.duration, o.rounds)
		var cases []httpCase
		for _, c := range httpCases() {
			if o.only == "" || strings.Contains(c.Backend+"/"+c.Impl+"/"+c.Size+"/"+c.Endpoint, o.only) {
				cases = append(cases, c)
			}
		}
		// Every round runs every case once, so that a slow spell of the
		// machine hits all cases alike rather than a few in a row.
		runs := make([][]httpResult, len(cases))
		for round := 1; round <= o.rounds; round++ {
			for i, c := range cases {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r, err := env.runHTTP(ctx, c, o.concurrency, o.warmup, o.duration)
				if err != nil {
					log.Printf("%s/%s/%s/%s: %v", c.Backend, c.Impl, c.Size, c.Endpoint, err)
				}
				log.Printf("round %d/%d  %-10s %-9s %-7s %-4s %8.0f req/s  p50 %6.0f µs  p99 %6.0f µs  cmds/req %5.2f  redis CPU µs/req %6.1f  errors %d",
					round, o.rounds, c.Backend, c.Impl, c.Size, c.Endpoint, r.RPS, r.P50, r.P99, r.CmdsPerReq, r.RedisCPU, r.Errors)
				runs[i] = append(runs[i], r)
			}
		}
		var out []httpResult
		for _, rs := range runs {
			out = append(out, medianRun(rs))
		}
		if err := writeJSON(httpPath, out); err != nil {
			return err
		}
		m.HTTPMinutes = time.Since(started).Minutes()
		m.LoadAfterHTTP = loadAvg()
	}
	if !(o.skipGoTest && o.skipPeer && o.skipHTTP) {
		if m.RedisVersion == "" {
			var old machine
			if readJSON(machinePath, &old) == nil {
				m.RedisVersion = old.RedisVersion
				if m.HTTP == "" {
					m.HTTP, m.LoadAfterHTTP = old.HTTP, old.LoadAfterHTTP
				}
				if m.GoTestCommand == "" {
					m.GoTestCommand, m.Load, m.LoadAfterGoTest = old.GoTestCommand, old.Load, old.LoadAfterGoTest
				}
			}
		}
		if m.RedisVersion == "" {
			m.RedisVersion = redisServerVersion()
		}
		var old machine
		_ = readJSON(machinePath, &old)
		if o.skipGoTest {
			m.GoTestMinutes = old.GoTestMinutes
			m.GoTestCommand, m.Load, m.LoadAfterGoTest = old.GoTestCommand, old.Load, old.LoadAfterGoTest
			m.GoTestDate = old.GoTestDate
			if m.GoTestDate == "" {
				m.GoTestDate = old.Date
			}
		}
		if o.skipPeer {
			m.PeerCommand, m.PeerMinutes = old.PeerCommand, old.PeerMinutes
		}
		if o.skipPeer && o.skipHTTP && old.Date != "" {
			// Only the lifecycle rows are new: the HTTP and peer tables
			// keep the date of the run that measured them.
			m.Date = old.Date
			m.HTTP, m.LoadAfterHTTP = old.HTTP, old.LoadAfterHTTP
		}
		if o.skipHTTP || o.only != "" {
			m.HTTPMinutes = old.HTTPMinutes
		}
		if err := writeJSON(machinePath, m); err != nil {
			return err
		}
	}

	rows, err := parseGoTest(lifecyclePath)
	if err != nil {
		return err
	}
	peer, err := parseGoTest(peerPath)
	if err != nil {
		return err
	}
	var httpRes []httpResult
	if err := readJSON(httpPath, &httpRes); err != nil {
		return err
	}
	return writeReport(root, m, rows, peer, httpRes)
}

// httpCases lists the load runs in order: each storage's gfsession run
// right next to gf's, and the baselines.
func httpCases() []httpCase {
	var cs []httpCase
	for _, size := range sizes {
		if size == sizes[0] {
			cs = append(cs, httpCase{Backend: "memory", Impl: "ghttp", Size: size, Endpoint: "GET"})
		}
		for _, backend := range []string{"memory", "file", "redis", "redis-hash"} {
			for _, ep := range []string{"GET", "POST"} {
				for _, impl := range []string{"gfsession", "gf"} {
					cs = append(cs, httpCase{Backend: backend, Impl: impl, Size: size, Endpoint: ep})
				}
			}
			if backend == "redis" {
				// After the redis/gfsession runs, whose session size it copies.
				cs = append(cs, httpCase{Backend: "redis", Impl: "limit", Size: size, Endpoint: "GET"})
			}
		}
	}
	return cs
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " ^$*'\"|&;<>()") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func mkdirTemp(parent, name string) (string, error) {
	return os.MkdirTemp(parent, name+"-")
}

// medianRun returns the run of one case with the median requests per
// second (the lower middle one of an even number).
func medianRun(rs []httpResult) httpResult {
	sorted := append([]httpResult(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].RPS < sorted[j].RPS })
	m := sorted[(len(sorted)-1)/2]
	m.RoundsRPS = nil
	for _, r := range rs {
		m.RoundsRPS = append(m.RoundsRPS, r.RPS)
	}
	return m
}
