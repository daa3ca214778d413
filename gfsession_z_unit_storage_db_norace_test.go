//go:build !race

package gfsession_test

// raceEnabled tells tests that the race detector runs, which makes
// SQLite (modernc.org/sqlite, C translated to Go) about 15 times slower.
const raceEnabled = false
