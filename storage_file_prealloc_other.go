//go:build !linux

package gfsession

import "os"

// preallocate does nothing outside Linux (see storage_file_prealloc_linux.go).
func preallocate(f *os.File, size int64) {}
