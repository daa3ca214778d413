package gfsession_test

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"
)

// fileBenchLive is how many session files exist during the file rows.
const fileBenchLive = 100_000

// fileBenchDirs keeps the pre-filled session folders, written once per
// run (the testing package runs every -cpu value of a leaf inside one call
// of its parents, so the backend setup and the fill run once); the backend's
// cleanup removes them.
var fileBenchDirs = struct {
	sync.Mutex
	m map[string]string // impl -> folder
}{m: map[string]string{}}

func init() {
	registerBenchBackend(benchBackend{
		name:  "file-100k",
		order: 20,
		live:  fileBenchLive,
		setup: func(b *testing.B) benchEnv {
			b.Cleanup(func() {
				fileBenchDirs.Lock()
				defer fileBenchDirs.Unlock()
				for impl, dir := range fileBenchDirs.m {
					_ = os.RemoveAll(dir)
					delete(fileBenchDirs.m, impl)
				}
			})
			return benchEnv{impls: []benchImpl{
				{name: "gfsession", filled: fileFilled("gfsession", func(b *testing.B, dir string) (gsession.Storage, func()) {
					s, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: dir})
					if err != nil {
						b.Fatal(err)
					}
					return s, func() { _ = s.Close(context.Background()) }
				})},
				{name: "gf", filled: fileFilled("gf", func(b *testing.B, dir string) (gsession.Storage, func()) {
					// gf's storage starts two package timers that cannot be
					// stopped; they only touch this folder.
					return gsession.NewStorageFile(dir, benchTTL), func() {}
				})},
			}}
		},
	})
}

// fileFilled returns a benchImpl.filled that opens the storage on a folder
// holding n session files, writing them on first use.
func fileFilled(impl string, open func(b *testing.B, dir string) (gsession.Storage, func())) func(b *testing.B, n int) (gsession.Storage, func()) {
	return func(b *testing.B, n int) (gsession.Storage, func()) {
		fileBenchDirs.Lock()
		dir, ok := fileBenchDirs.m[impl]
		fileBenchDirs.Unlock()
		if ok {
			return open(b, dir)
		}
		dir, err := os.MkdirTemp("", "gfsession-bench-"+impl+"-")
		if err != nil {
			b.Fatal(err)
		}
		st, release := open(b, dir)
		fillSessions(b, st, make([]string, n), 1, runtime.GOMAXPROCS(0)*4)
		fileBenchDirs.Lock()
		fileBenchDirs.m[impl] = dir
		fileBenchDirs.Unlock()
		return st, release
	}
}
