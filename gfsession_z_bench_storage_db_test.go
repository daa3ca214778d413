package gfsession_test

// Benchmarks of StorageDB's session lifecycle through gsession.Manager on
// each database (gf has no SQL storage to compare with). Run them with
//
//	go test -run '^$' -bench BenchmarkStorageDB -benchmem .
//
// Names: BenchmarkStorageDB_Lifecycle/<dialect>/<mode>
//
//	dialect  mysql, pgsql (the test databases, see dbTestLink), sqlite (a
//	         file in a temporary folder, WAL)
//	mode     rw: load, 3 gets, 1 set, close; ro: load, 3 gets, close;
//	         ro-touch1m: ro with TouchInterval 1m
//
// Extra metrics: stmts/op (SQL statements the storage ran per request) and
// writes/op (statements per request that changed a row).

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogf/gf/v2/database/gdb"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
)

// countingDB counts the statements the storage runs through gdb.
type countingDB struct {
	gdb.DB
	stmts, writes atomic.Int64
}

func (c *countingDB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	c.stmts.Add(1)
	res, err := c.DB.Exec(ctx, query, args...)
	if err == nil {
		if n, _ := res.RowsAffected(); n > 0 {
			c.writes.Add(1)
		}
	}
	return res, err
}

func (c *countingDB) GetOne(ctx context.Context, query string, args ...any) (gdb.Record, error) {
	c.stmts.Add(1)
	return c.DB.GetOne(ctx, query, args...)
}

func BenchmarkStorageDB_Lifecycle(b *testing.B) {
	const sessions = 256
	ctx := context.Background()
	for _, dialect := range dbDialects {
		b.Run(dialect, func(b *testing.B) {
			db := openTestDB(b, dbTestLink(b, dialect))
			table := testTable(b, db)
			counted := &countingDB{DB: db}
			for _, mode := range []struct {
				name  string
				write bool
				touch time.Duration
			}{{"rw", true, 0}, {"ro", false, 0}, {"ro-touch1m", false, time.Minute}} {
				b.Run(mode.name, func(b *testing.B) {
					st, err := gfsession.NewStorageDB(counted, gfsession.DBConfig{
						Table: table, CleanupInterval: -1, TouchInterval: mode.touch,
					})
					if err != nil {
						b.Fatal(err)
					}
					defer func() { _ = st.Close(ctx) }()
					m := gsession.New(time.Hour, st)
					ids := make([]string, sessions)
					for i := range ids {
						ids[i] = gfsession.NewSessionId()
						s := m.New(ctx, ids[i])
						if err := s.SetMap(map[string]any{"user": fmt.Sprintf("user%06d", i), "role": "admin", "n": int64(i)}); err != nil {
							b.Fatal(err)
						}
						if err := s.Close(); err != nil {
							b.Fatal(err)
						}
					}
					rng := rand.New(rand.NewPCG(1, 2))
					stmts0, writes0 := counted.stmts.Load(), counted.writes.Load()
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						s := m.New(ctx, ids[rng.IntN(len(ids))])
						for _, k := range []string{"user", "role", "n"} {
							v, err := s.Get(k)
							if err != nil || v == nil {
								b.Fatalf("Get(%q) = %v, %v", k, v, err)
							}
						}
						if mode.write {
							if err := s.Set("seq", int64(i)); err != nil {
								b.Fatal(err)
							}
						}
						if err := s.Close(); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					b.ReportMetric(float64(counted.stmts.Load()-stmts0)/float64(b.N), "stmts/op")
					b.ReportMetric(float64(counted.writes.Load()-writes0)/float64(b.N), "writes/op")
				})
			}
		})
	}
}
