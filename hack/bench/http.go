package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
)

// httpCase is one load run: a storage (or none) behind a ghttp server and
// one endpoint.
type httpCase struct {
	Backend  string `json:"backend"`  // memory, file, redis, redis-hash
	Impl     string `json:"impl"`     // gfsession, gf, limit, ghttp
	Size     string `json:"size"`     // 1key, 10keys, 100keys
	Endpoint string `json:"endpoint"` // GET (3 reads) or POST (1 write)
}

// httpResult is what one load run measured.
type httpResult struct {
	httpCase
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	CmdsPerReq  float64 `json:"cmds_per_req"`         // -1 without Redis
	RedisCPU    float64 `json:"redis_cpu_us_per_req"` // redis-server CPU time per request (INFO cpu), µs
	Concurrency int     `json:"concurrency"`
	// RoundsRPS holds the requests per second of every round, in round
	// order; the other fields are those of the median round.
	RoundsRPS []float64 `json:"rounds_rps,omitempty"`
}

const (
	sessionTTL    = time.Hour
	sessionCookie = "gfsessionid" // ghttp's default session id name
)

func sizeKeys(size string) int {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(size, "s"), "key"))
	if err != nil {
		panic("bad size " + size)
	}
	return n
}

func key(i int) string { return "key" + strconv.Itoa(i) }

// httpEnv holds what the load runs share: the Redis server and client.
type httpEnv struct {
	redis  *redisServer
	client *gredis.Redis
	tmp    string
	seq    atomic.Int64
	// blobSize is the byte size of a session as StorageRedis stores it, per
	// size, taken from the redis/gfsession runs for the limit runs.
	blobSize map[string]int64
	prefix   string // Redis key prefix of the current case
}

// newStorage returns the storage of a case and a function releasing it.
func (e *httpEnv) newStorage(c httpCase) (gsession.Storage, func(), error) {
	prefix := fmt.Sprintf("http%d:%s:", e.seq.Add(1), c.Impl)
	e.prefix = prefix
	switch c.Backend + "/" + c.Impl {
	case "memory/gfsession":
		s := gfsession.NewStorageMemory()
		return s, func() { _ = s.Close(context.Background()) }, nil
	case "memory/gf":
		return gsession.NewStorageMemory(), func() {}, nil
	case "file/gfsession", "file/gf":
		dir, err := mkdirTemp(e.tmp, c.Impl)
		if err != nil {
			return nil, nil, err
		}
		if c.Impl == "gf" {
			return gsession.NewStorageFile(dir, sessionTTL), func() {}, nil
		}
		s, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: dir})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(context.Background()) }, nil
	case "redis/gfsession":
		s, err := gfsession.NewStorageRedis(e.client, gfsession.RedisConfig{Prefix: prefix})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(context.Background()) }, nil
	case "redis/gf":
		return gsession.NewStorageRedis(e.client, prefix), func() {}, nil
	case "redis-hash/gfsession":
		s, err := gfsession.NewStorageRedisHash(e.client, gfsession.RedisConfig{Prefix: prefix})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(context.Background()) }, nil
	case "redis-hash/gf":
		return gsession.NewStorageRedisHashTable(e.client, prefix), func() {}, nil
	case "redis/limit", "memory/ghttp":
		// No session is touched: the storage is never called.
		return gsession.NewStorageMemory(), func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown case %s/%s", c.Backend, c.Impl)
}

// runHTTP starts a ghttp server for case c, logs in `vus` sessions and
// drives the endpoint with one keep-alive connection per virtual user for
// warmup + duration; it measures during duration only.
func (e *httpEnv) runHTTP(ctx context.Context, c httpCase, vus int, warmup, duration time.Duration) (httpResult, error) {
	res := httpResult{httpCase: c, CmdsPerReq: -1, Concurrency: vus}
	storage, release, err := e.newStorage(c)
	if err != nil {
		return res, err
	}
	defer release()

	keys := sizeKeys(c.Size)
	// Pre-logged-in sessions, one per virtual user, written through the
	// storage as a login request would.
	ids := make([]string, vus)
	m := gsession.New(sessionTTL, storage)
	for i := range ids {
		ids[i] = gfsession.NewSessionId()
		data := make(map[string]any, keys)
		for k := 0; k < keys; k++ {
			data[key(k)] = fmt.Sprintf("v%03d-%012d", k, i)
		}
		s := m.New(ctx, ids[i])
		if err := s.SetMap(data); err != nil {
			return res, err
		}
		if err := s.Close(); err != nil {
			return res, err
		}
	}
	if c.Backend == "redis" && c.Impl == "gfsession" {
		if v, err := e.client.Do(ctx, "STRLEN", e.prefix+ids[0]); err == nil && v.Int64() > 0 {
			e.blobSize[c.Size] = v.Int64()
		}
	}
	// The limit: one raw GET of a value as large as the session blob.
	limitKey := fmt.Sprintf("httplimit%d", e.seq.Add(1))
	if c.Impl == "limit" {
		n := e.blobSize[c.Size]
		if n == 0 {
			n = int64(24 + keys*30)
		}
		blob := bytes.Repeat([]byte("x"), int(n))
		if _, err := e.client.Do(ctx, "SET", limitKey, blob); err != nil {
			return res, err
		}
	}

	gets := [3]string{key(0), key(1 % keys), key(2 % keys)}
	var counter atomic.Int64
	s := ghttp.GetServer(fmt.Sprintf("bench-%d", e.seq.Add(1)))
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	s.SetLogStdout(false)
	s.SetAccessLogEnabled(false)
	s.SetSessionMaxAge(sessionTTL)
	s.SetSessionStorage(storage)
	s.BindHandler("GET:/read", func(r *ghttp.Request) {
		for _, k := range gets {
			v, err := r.Session.Get(k)
			if err != nil || v == nil {
				r.Response.WriteStatus(http.StatusInternalServerError, "lost "+k)
				return
			}
		}
		r.Response.Write("ok")
	})
	s.BindHandler("POST:/write", func(r *ghttp.Request) {
		if err := r.Session.Set(key(0), counter.Add(1)); err != nil {
			r.Response.WriteStatus(http.StatusInternalServerError, err.Error())
			return
		}
		r.Response.Write("ok")
	})
	s.BindHandler("GET:/limit", func(r *ghttp.Request) {
		v, err := e.client.Do(r.Context(), "GET", limitKey)
		if err != nil || v.IsNil() {
			r.Response.WriteStatus(http.StatusInternalServerError, "limit key missing")
			return
		}
		r.Response.Write("ok")
	})
	s.BindHandler("GET:/hello", func(r *ghttp.Request) { r.Response.Write("ok") })
	if err := s.Start(); err != nil {
		return res, err
	}
	defer func() { _ = s.Shutdown() }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.GetListenedPort()))

	var path, method string
	switch {
	case c.Impl == "limit":
		method, path = "GET", "/limit"
	case c.Impl == "ghttp":
		method, path = "GET", "/hello"
	case c.Endpoint == "POST":
		method, path = "POST", "/write"
	default:
		method, path = "GET", "/read"
	}

	// Load: phase 0 warms up, 1 measures, 2 stops.
	var (
		phase    atomic.Int32
		wg       sync.WaitGroup
		lat      = make([][]time.Duration, vus)
		errCount atomic.Int64
		firstErr atomic.Value
	)
	for i := 0; i < vus; i++ {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return res, err
		}
		req := []byte(fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\nContent-Length: 0\r\n\r\n",
			method, path, addr, sessionCookie, ids[i]))
		wg.Add(1)
		go func(i int, conn net.Conn) {
			defer wg.Done()
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			own := make([]time.Duration, 0, 1<<14)
			for {
				p := phase.Load()
				if p == 2 {
					break
				}
				start := time.Now()
				_ = conn.SetDeadline(start.Add(10 * time.Second))
				if _, err := conn.Write(req); err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err)
					break
				}
				status, err := readResponse(br)
				d := time.Since(start)
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err)
					break
				}
				if status != 200 {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("HTTP %d", status))
				}
				if p == 1 {
					own = append(own, d)
				}
			}
			lat[i] = own
		}(i, conn)
	}
	sleepCtx(ctx, warmup)
	var (
		calls0 int64
		cpu0   float64
	)
	if e.redis != nil {
		calls0, cpu0, _ = e.redis.calls()
	}
	errCount.Store(0)
	t0 := time.Now()
	phase.Store(1)
	sleepCtx(ctx, duration)
	phase.Store(2)
	elapsed := time.Since(t0)
	var (
		calls1 int64
		cpu1   float64
	)
	if e.redis != nil {
		calls1, cpu1, _ = e.redis.calls()
	}
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.Requests = int64(len(all))
	res.Errors = errCount.Load()
	res.Seconds = elapsed.Seconds()
	if len(all) > 0 {
		res.RPS = float64(len(all)) / elapsed.Seconds()
		res.P50 = float64(all[len(all)*50/100].Microseconds())
		res.P99 = float64(all[len(all)*99/100].Microseconds())
	}
	if e.redis != nil && (c.Backend == "redis" || c.Backend == "redis-hash" || c.Impl == "limit") && res.Requests > 0 {
		res.CmdsPerReq = float64(calls1-calls0) / float64(res.Requests)
		res.RedisCPU = (cpu1 - cpu0) * 1e6 / float64(res.Requests)
	}
	if v := firstErr.Load(); v != nil && (res.Errors > 0 || res.Requests == 0) {
		return res, fmt.Errorf("%d errors, first: %v", res.Errors, v)
	}
	return res, nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length (ghttp
// sends one for these small bodies) and returns its status.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	chunked := false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return 0, err
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	if chunked {
		return status, discardChunked(br)
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// discardChunked reads a chunked body and its trailer.
func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailer, up to an empty line
				t, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
