package gfsession

import (
	"hash/maphash"
	"sync"
	"time"
)

// refreshPeriod returns how long after a restart of a session's idle TTL
// `ttl` a read may leave the TTL as it is: min(ttl/64, 1s). A session then
// expires at most that much earlier than a restart at every read would
// make it (under 1.6 % of the TTL), and a session in use several times a
// second costs one TTL restart a second. The file storage uses the same
// period for its modification times.
func refreshPeriod(ttl time.Duration) time.Duration {
	return min(ttl/64, time.Second)
}

// refreshMemoShards splits refreshMemo's lock.
const refreshMemoShards = 32

// refreshMemo remembers when this process last restarted the TTL of the
// sessions it read, so that reads in quick succession restart it once per
// refreshPeriod (a Redis read that restarts the TTL costs the server more
// than one that does not). It is bounded by the sessions read in the last
// two seconds: each shard keeps two generations of records and drops the
// older one once the newer is a second old, on its next use; there is no
// timer. Sessions are known by a 64-bit hash of their name: two sessions
// of one hash only share their restarts, which moves an expiry earlier by
// at most refreshPeriod.
//
// The zero value is ready to use.
type refreshMemo struct {
	shards [refreshMemoShards]refreshMemoShard
}

type refreshMemoShard struct {
	mu    sync.Mutex
	cur   map[uint64]int64 // name hash -> the expiry its last TTL restart set, Unix nanoseconds
	prev  map[uint64]int64 // the generation before cur
	since int64            // when cur was started
}

// refreshGeneration is how long a generation of refreshMemo lasts: at least
// the longest refreshPeriod.
const refreshGeneration = time.Second

// due reports whether a read of session `name` with idle TTL `ttl` at
// `now` must restart the TTL: unless the last restart of it by this
// process left it more than `ttl` less refreshPeriod(ttl) (a restart with
// the same TTL less than refreshPeriod ago; one with a TTL shorter by
// that much never does).
func (m *refreshMemo) due(name string, ttl time.Duration, now time.Time) bool {
	period := refreshPeriod(ttl)
	if period <= 0 {
		return true
	}
	h := maphash.String(shardSeed, name)
	sh := &m.shards[h%refreshMemoShards]
	sh.mu.Lock()
	exp, ok := sh.cur[h]
	if !ok {
		exp, ok = sh.prev[h]
	}
	sh.mu.Unlock()
	return !ok || exp-now.UnixNano() <= int64(ttl-period)
}

// restarted records that the TTL of session `name` was restarted at `ttl`
// at `now` (or later).
func (m *refreshMemo) restarted(name string, ttl time.Duration, now time.Time) {
	h := maphash.String(shardSeed, name)
	sh := &m.shards[h%refreshMemoShards]
	t := now.UnixNano()
	sh.mu.Lock()
	if sh.cur == nil {
		sh.cur, sh.prev, sh.since = make(map[uint64]int64), make(map[uint64]int64), t
	} else if t-sh.since >= int64(refreshGeneration) || t < sh.since {
		// Keep the maps' room: the number of sessions read a second is
		// about the same from one second to the next.
		sh.cur, sh.prev = sh.prev, sh.cur
		clear(sh.cur)
		sh.since = t
	}
	sh.cur[h] = t + int64(ttl)
	sh.mu.Unlock()
}

// size returns the number of records kept, for tests.
func (m *refreshMemo) size() (n int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.cur) + len(sh.prev)
		sh.mu.Unlock()
	}
	return n
}
