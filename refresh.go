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

// refreshMemo remembers the TTL this process last gave each session it
// read or wrote, so that reads in quick succession restart it once per
// refreshPeriod (a Redis read that restarts the TTL costs the server more
// than one that does not). A write counts as a restart with the TTL it
// set: a manager with a shorter TTL writing the session leaves the next
// read of one with a longer TTL due. Of two restarts that overlapped in
// time, the server may have applied either last: the memo keeps the
// earlier expiry of the two. Restarts by other processes are not seen: a
// process whose managers use a longer TTL than another process's may
// leave a session that the other just wrote for up to refreshPeriod.
//
// It is bounded by the sessions read or written in the last two seconds:
// each shard keeps two generations of records and drops the older one once
// the newer is a second old, on its next use; there is no timer. Sessions are known by a 64-bit hash of their name: two sessions
// of one hash only share their restarts, which moves an expiry earlier by
// at most refreshPeriod.
//
// The zero value is ready to use.
type refreshMemo struct {
	shards [refreshMemoShards]refreshMemoShard
}

type refreshMemoShard struct {
	mu    sync.Mutex
	cur   map[uint64]refreshRecord // by name hash
	prev  map[uint64]refreshRecord // the generation before cur
	since int64                    // when cur was started
}

// refreshRecord is the last TTL restart of a session, Unix nanoseconds.
type refreshRecord struct {
	exp  int64 // the expiry it set (at the earliest)
	done int64 // when its command had been answered
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
	rec, ok := sh.get(h)
	sh.mu.Unlock()
	return !ok || rec.exp-now.UnixNano() <= int64(ttl-period)
}

func (sh *refreshMemoShard) get(h uint64) (refreshRecord, bool) {
	rec, ok := sh.cur[h]
	if !ok {
		rec, ok = sh.prev[h]
	}
	return rec, ok
}

// restarted records that the TTL of session `name` was set to `ttl` by a
// command sent at `start` and answered at `done`.
func (m *refreshMemo) restarted(name string, ttl time.Duration, start, done time.Time) {
	h := maphash.String(shardSeed, name)
	sh := &m.shards[h%refreshMemoShards]
	t := start.UnixNano()
	rec := refreshRecord{exp: t + int64(ttl), done: done.UnixNano()}
	sh.mu.Lock()
	if old, ok := sh.get(h); ok && old.done >= t {
		// The two overlapped: either may be the one the server applied last.
		rec.exp, rec.done = min(rec.exp, old.exp), max(rec.done, old.done)
	}
	if sh.cur == nil {
		sh.cur, sh.prev, sh.since = make(map[uint64]refreshRecord), make(map[uint64]refreshRecord), t
	} else if t-sh.since >= int64(refreshGeneration) || t < sh.since {
		// Keep the maps' room: the number of sessions read a second is
		// about the same from one second to the next.
		sh.cur, sh.prev = sh.prev, sh.cur
		clear(sh.cur)
		sh.since = t
	}
	sh.cur[h] = rec
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
