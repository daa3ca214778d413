package gfsession_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gogf/gf/v2/database/gredis"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/internal/testredis"
)

func init() {
	registerBenchBackend(benchBackend{name: "redis", order: 30, setup: func(b *testing.B) benchEnv {
		return redisBenchEnv(b,
			func(b *testing.B, c *gredis.Redis) gsession.Storage {
				s, err := gfsession.NewStorageRedis(c, gfsession.RedisConfig{Prefix: "bench:ours:"})
				if err != nil {
					b.Fatal(err)
				}
				return s
			},
			func(b *testing.B, c *gredis.Redis) gsession.Storage {
				// Starts a package timer that cannot be stopped (gf).
				return gsession.NewStorageRedis(c, "bench:gf:")
			})
	}})
	registerBenchBackend(benchBackend{name: "redis-hash", order: 40, setup: func(b *testing.B) benchEnv {
		return redisBenchEnv(b,
			func(b *testing.B, c *gredis.Redis) gsession.Storage {
				s, err := gfsession.NewStorageRedisHash(c, gfsession.RedisConfig{Prefix: "bench:ours:"})
				if err != nil {
					b.Fatal(err)
				}
				return s
			},
			func(b *testing.B, c *gredis.Redis) gsession.Storage {
				return gsession.NewStorageRedisHashTable(c, "bench:gf:")
			})
	}})
}

// redisBenchEnv starts a private redis-server for one backend and returns
// its two implementations, each with a twin reached through a round-trip
// counting proxy.
func redisBenchEnv(b *testing.B, ours, gf func(*testing.B, *gredis.Redis) gsession.Storage) benchEnv {
	srv := testredis.Start(b)
	direct := newBenchRedisClient(b, srv.Addr)
	proxy := startRTTProxy(b, srv.Addr)
	viaProxy := newBenchRedisClient(b, proxy.addr)
	impl := func(name string, mk func(*testing.B, *gredis.Redis) gsession.Storage) benchImpl {
		return benchImpl{
			name: name,
			open: func(b *testing.B) (gsession.Storage, func()) {
				s := mk(b, direct)
				return s, func() { closeStorage(s) }
			},
			counted: func(b *testing.B) (gsession.Storage, *atomic.Int64, func()) {
				s := mk(b, viaProxy)
				return s, &proxy.turns, func() { closeStorage(s) }
			},
		}
	}
	return benchEnv{impls: []benchImpl{impl("gfsession", ours), impl("gf", gf)}, redis: srv}
}

// closeStorage closes the storages of this module; gf's have no Close.
func closeStorage(s gsession.Storage) {
	if c, ok := s.(interface{ Close(context.Context) error }); ok {
		_ = c.Close(context.Background())
	}
}

func newBenchRedisClient(b *testing.B, addr string) *gredis.Redis {
	c, err := gredis.New(&gredis.Config{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// rttProxy forwards TCP connections to a Redis server and counts round
// trips: a turn starts when a client sends bytes while no reply is pending
// on that connection, so a pipeline or a script counts once, however many
// commands it holds.
type rttProxy struct {
	addr  string
	turns atomic.Int64
}

func startRTTProxy(b *testing.B, target string) *rttProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &rttProxy{addr: l.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			var pending atomic.Bool
			wg.Add(2)
			go func() { // client -> server
				defer wg.Done()
				defer u.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if !pending.Swap(true) {
							p.turns.Add(1)
						}
						if _, werr := u.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server -> client
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						pending.Store(false)
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}
