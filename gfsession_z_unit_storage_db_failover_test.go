package gfsession_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/database/gdb"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
)

// freezeProxy forwards TCP connections to a target. Freeze makes every
// connection open at that moment silent for good, without closing it, while
// new connections work: what a client sees of a failover, a crashed VM, or
// a load balancer or NAT that lost its state.
type freezeProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen []chan struct{} // closed when the connection freezes
	done   chan struct{}
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &freezeProxy{ln: ln, done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { close(p.done); _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			frozen := make(chan struct{})
			p.mu.Lock()
			p.frozen = append(p.frozen, frozen)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					select {
					case <-frozen: // drop everything, answer nothing
						<-p.done
						_ = c.Close()
						_ = u.Close()
						return
					default:
					}
					if n > 0 {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						_ = dst.Close()
						return
					}
				}
			}
			wg.Add(2)
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return p
}

// Freeze silences the connections open now.
func (p *freezeProxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		close(f)
	}
	p.frozen = nil
}

// TestStorageDB_PgFailover freezes every connection of the pool, idle ones
// included, while the database takes new connections (a PostgreSQL
// failover). lib/pq waits on a silent connection until the kernel gives up,
// minutes later; the storage must work again within a few Timeouts anyway,
// and not lose its turns to the statements left waiting.
func TestStorageDB_PgFailover(t *testing.T) {
	link := dbTestLink(t, "pgsql")
	table := testTable(t, openTestDB(t, link))
	match := linkAddr.FindStringSubmatch(link)
	require.NotNil(t, match, "link %q has no @tcp(host:port)", link)
	p := newFreezeProxy(t, match[1])
	db, err := gdb.New(gdb.ConfigNode{Link: strings.Replace(link, match[0], "@tcp("+p.ln.Addr().String()+")", 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	const (
		timeout  = 300 * time.Millisecond
		maxConns = 2
	)
	s := newDB(t, db, gfsession.DBConfig{Table: table, CleanupInterval: -1, Timeout: timeout, MaxConns: maxConns})
	ctx := context.Background()
	id := gfsession.NewSessionId()
	require.NoError(t, s.SetSession(ctx, id, gmap.NewStrAnyMapFrom(map[string]any{"u": "ann"}), time.Hour))
	// More idle connections in the pool than the storage has turns.
	pool, err := db.Master()
	require.NoError(t, err)
	var conns []interface{ Close() error }
	for i := 0; i < 3*maxConns; i++ {
		c, err := pool.Conn(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}

	p.Freeze()
	began := time.Now()
	require.Eventually(t, func() bool {
		data, err := s.GetSession(ctx, id, time.Hour)
		return err == nil && data != nil && data.Get("u") == "ann"
	}, 10*timeout, 10*time.Millisecond, "no recovery although the database takes new connections")
	t.Logf("recovered in %v", time.Since(began).Round(time.Millisecond))
}
