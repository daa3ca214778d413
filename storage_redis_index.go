package gfsession

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/redis/go-redis/v9"
)

// userIndexScript records session ARGV[1] in the user index KEYS[1], in one
// round trip (see userIndexLua for the arguments).
var userIndexScript = newRedisScript(userIndexLua + `
index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
`)

// userIndexKey returns the key of the index of user `userId`.
func (r *redisStore) userIndexKey(userId string) string {
	return r.prefix + redisUserInfix + userId
}

// shownUserIndex returns the key of user `userId`'s index for errors, a long
// user id cut.
func (r *redisStore) shownUserIndex(userId string) string {
	if len(userId) > 64 {
		userId = userId[:64] + "..."
	}
	return r.userIndexKey(userId)
}

// indexUser records session `id` in the index of user `userId` (one script
// call). It runs before the session is written, so that a session is never
// stored under a user without its index entry.
func (r *redisStore) indexUser(ctx context.Context, userId, id string) error {
	if userId == "" {
		return nil
	}
	_, cmd, err := r.evalKey(ctx, userIndexScript, r.userIndexKey(userId),
		id, time.Now().UnixMilli(), millis(r.userIndexTTL))
	if err != nil {
		return r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	return nil
}

// confirmUser makes sure the index of user `userId` lists session `id`,
// after a write that names the user where the index could not be written
// in the write's own script: an entry there (the one the login made before
// the write) keeps its score, which is the session's place in
// maxSessionsPerUser's order, so that it does not move between the two
// calls; a missing one (removed by a DestroyUser in between) is made again.
func (r *redisStore) confirmUser(ctx context.Context, userId, id string) error {
	if userId == "" {
		return nil
	}
	_, cmd, err := r.evalKey(ctx, userConfirmScript, r.userIndexKey(userId),
		id, time.Now().UnixMilli(), millis(r.userIndexTTL))
	if err != nil {
		return r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	return nil
}

// userConfirmScript is confirmUser's: userIndexScript unless the entry is
// there already.
var userConfirmScript = newRedisScript(userIndexLua + `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
`)

// userIndexReadScript returns the entries of the user index KEYS[1] as a
// flat list: member, score, member, score... (a script, so that the reply
// is flat whatever protocol the client speaks).
var userIndexReadScript = newRedisScript(`
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
`)

// userIndexDropScript removes from the user index KEYS[1] the entries given
// as ARGV member/score pairs that still have that score: an entry a login
// re-added meanwhile (a newer score) stays. It returns the members removed.
var userIndexDropScript = newRedisScript(`
local removed = {}
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
return removed
`)

// destroyUser deletes the sessions of user `userId` listed in the user's
// index: `destroy` deletes one session if it still belongs to the user and
// reports whether it deleted a live one. Every entry read is then removed
// from the index, deleted or stale (expired, of another user now), unless a
// login re-added it meanwhile.
//
// A session found not to belong to the user whose entry was then removed is
// checked once more, after the removal: a login whose index entry was made
// before its write (as both storages do, where the index and the session
// cannot be written in one script) may have stored the user between the
// check and the removal, and is deleted then. A login stored after the
// removal restores its entry itself (the key-value storage indexes after
// the write, the hash storage confirms the entry after it), so whatever
// the interleaving, a session stored under the user is either deleted or
// still indexed.
//
// The session whose handle is `keep` ("" for none) is left alone, and so is
// its entry.
func (r *redisStore) destroyUser(ctx context.Context, userId, keep string, destroy func(id string) (bool, error)) (int, error) {
	if r.userKey == "" {
		return 0, errNoUserKey(r.backend)
	}
	if userId == "" {
		return 0, nil
	}
	d := &userDestroy{
		r:       r,
		userId:  userId,
		key:     r.userIndexKey(userId),
		keep:    keep,
		destroy: destroy,
		kept:    make(map[string]bool),
	}
	entries, err := d.read(ctx)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(entries); i += 2 {
		if err := ctx.Err(); err != nil {
			return d.n, err
		}
		if err := d.visit(ctx, entries[i], entries[i+1]); err != nil {
			return d.n, err
		}
	}
	err = d.flush(ctx)
	return d.n, err
}

// userDestroy is one run of redisStore.destroyUser over the index of user
// `userId`: the sessions deleted so far, and the entries read but not yet
// removed from the index.
type userDestroy struct {
	r       *redisStore
	userId  string
	key     string // the user's index
	keep    string // the handle of a session to spare, with its entry
	destroy func(id string) (bool, error)
	n       int             // live sessions deleted
	done    []any           // entries to remove from the index: member, score...
	kept    map[string]bool // sessions of `done` found not to be the user's
}

// read returns the entries of the user's index as a flat list: member,
// score, member, score...
func (d *userDestroy) read(ctx context.Context) ([]string, error) {
	v, cmd, err := d.r.evalKey(ctx, userIndexReadScript, d.key)
	if err != nil {
		return nil, d.r.wrapKey(err, cmd, d.r.shownUserIndex(d.userId))
	}
	return v.Strings(), nil
}

// visit deletes session `id` of the index entry with score `score` if it
// is still the user's (remembering it in `kept` otherwise), and queues the
// entry for removal from the index, removing the queue once it holds
// redisBatch entries (see flush).
func (d *userDestroy) visit(ctx context.Context, id, score string) error {
	if d.keep != "" && id == d.keep {
		return nil
	}
	if IsValidSessionId(id) {
		deleted, err := d.delete(id)
		if err != nil {
			return err
		}
		if !deleted {
			d.kept[id] = true
		}
	}
	if d.done = append(d.done, id, score); len(d.done) >= 2*redisBatch {
		return d.flush(ctx)
	}
	return nil
}

// flush removes the queued entries from the index, each unless a login
// re-added it meanwhile, and checks once more the sessions of the removed
// entries that were found not to be the user's (see redisStore.destroyUser).
func (d *userDestroy) flush(ctx context.Context) error {
	if len(d.done) == 0 {
		return nil
	}
	removed, cmd, err := d.r.evalKey(ctx, userIndexDropScript, d.key, d.done...)
	d.done = d.done[:0]
	if err != nil {
		return d.r.wrapKey(err, cmd, d.r.shownUserIndex(d.userId))
	}
	return d.recheck(removed.Strings())
}

// recheck deletes, among the sessions whose entries flush removed, the
// ones found not to be the user's before: a login may have stored the user
// between that check and the removal.
func (d *userDestroy) recheck(removed []string) error {
	for _, id := range removed {
		if !d.kept[id] {
			continue
		}
		if _, err := d.delete(id); err != nil {
			return err
		}
	}
	clear(d.kept)
	return nil
}

// delete deletes session `id` if it is still the user's, counting it in
// `n` when it was live, and reports whether it deleted a live one.
func (d *userDestroy) delete(id string) (bool, error) {
	deleted, err := d.destroy(id)
	if err == nil && deleted {
		d.n++
	}
	return deleted, err
}

// errKeepsChanging is DestroyUser's error for a session that concurrent
// requests rewrote redisCASTries times between its read and its delete.
func (r *redisStore) errKeepsChanging(id string) error {
	return gerror.NewCodef(gcode.CodeInternalError,
		"gfsession: %s storage: DestroyUser: session %q changed %d times while being deleted; try again",
		r.backend, r.prefix+shortId(id), redisCASTries)
}

// sessionProbe is how sessions reads one session of a user index: `args`
// is the command reading what `judge` needs from the key `key`, and `judge`
// tells from its reply whether session `name` is live and the user's, with
// what Sessions shows of it but the handle and LastActive.
type sessionProbe struct {
	args  func(key string) []any
	judge func(name string, reply any) (SessionInfo, bool)
}

// sessions returns the live sessions of user `userId`, unordered and
// without Current (see Admin.Sessions): the user's index read in one call,
// then, for every session it lists, `probe`'s command and the key's expiry
// (PEXPIRETIME), all in one pipeline through gf's go-redis adapter (one
// round trip, on every master of a Cluster concurrently), else one command
// at a time. When the index lists no more than `atMost` sessions (-1: no
// such bound) it returns none and reads no session: maxSessionsPerUser's
// check that a login left the user within the limit costs one round trip.
// Nothing is written.
func (r *redisStore) sessions(ctx context.Context, userId string, atMost int, probe sessionProbe) ([]SessionInfo, error) {
	if r.userKey == "" {
		return nil, errNoUserKey(r.backend)
	}
	if userId == "" {
		return nil, nil
	}
	d := &userDestroy{r: r, userId: userId, key: r.userIndexKey(userId)}
	entries, err := d.read(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries)/2)
	indexed := make(map[string]time.Time, len(entries)/2) // when each entry was made
	for i := 0; i+1 < len(entries); i += 2 {
		if IsValidSessionId(entries[i]) {
			names = append(names, entries[i])
			if ms, err := strconv.ParseFloat(entries[i+1], 64); err == nil {
				indexed[entries[i]] = time.UnixMilli(int64(ms))
			}
		}
	}
	if atMost >= 0 && len(names) <= atMost {
		return nil, nil
	}
	if r.raw != nil && !r.noExpireTime.Load() {
		list, err := r.sessionsPipelined(ctx, names, indexed, probe)
		if err == nil || !r.noExpireTime.Load() {
			return list, err
		}
	}
	ttl := r.ttl.get()
	var list []SessionInfo
	for _, name := range names {
		args := probe.args(r.key(name))
		reply, err := r.client.Do(ctx, args[0].(string), args[1:]...)
		if err != nil {
			return nil, r.wrap(err, args[0].(string), name)
		}
		info, ok := probe.judge(name, reply.Val())
		if !ok {
			continue
		}
		expires, live, err := r.expiry(ctx, name)
		if err != nil {
			return nil, err
		}
		if !live {
			continue // gone since
		}
		info.Handle = name
		activity(&info, expires, ttl, r.maxLifetime, indexed[name])
		list = append(list, info)
	}
	return list, nil
}

// sessionsPipelined is the pipelined read of sessions. A server without
// PEXPIRETIME sets noExpireTime and fails it: sessions then reads one
// session at a time with PTTL.
func (r *redisStore) sessionsPipelined(ctx context.Context, names []string, indexed map[string]time.Time, probe sessionProbe) ([]SessionInfo, error) {
	reads := make([]*redis.Cmd, len(names))
	expiries := make([]*redis.Cmd, len(names))
	// Each command carries its own error, which the loop below reads.
	_, _ = r.raw.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			reads[i] = p.Do(ctx, probe.args(r.key(name))...)
			expiries[i] = p.Do(ctx, "PEXPIRETIME", r.key(name))
		}
		return nil
	})
	ttl := r.ttl.get()
	var list []SessionInfo
	for i, name := range names {
		reply, rerr := reads[i].Result()
		ms, eerr := expiries[i].Int64()
		switch {
		case eerr != nil && strings.Contains(strings.ToLower(eerr.Error()), "unknown command"):
			r.noExpireTime.Store(true)
			return nil, eerr
		case rerr == redis.Nil:
			continue
		case rerr != nil:
			return nil, r.wrap(rerr, probe.args("")[0].(string), name)
		case eerr != nil:
			return nil, r.wrap(eerr, "PEXPIRETIME", name)
		}
		info, ok := probe.judge(name, reply)
		expires, live := expireTime(ms)
		if !ok || !live {
			continue
		}
		info.Handle = name
		activity(&info, expires, ttl, r.maxLifetime, indexed[name])
		list = append(list, info)
	}
	return list, nil
}

// expireTime reads a PEXPIRETIME reply `ms`: when the key expires, and
// whether it exists. A key without a TTL reads as expiring now.
func expireTime(ms int64) (time.Time, bool) {
	switch {
	case ms == -1:
		return time.Now(), true
	case ms < 0:
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// users calls `fn` with each user that has an index and live sessions, and
// their number, until `fn` returns false (see Admin.Users): SCAN of the
// index keys (prefix + "user:*", sorted sets) on every master, then, per
// user, `count`, which checks the sessions the index lists.
func (r *redisStore) users(ctx context.Context, fn func(userId string, sessions int) bool, count func(userId string) (int, error)) error {
	if r.userKey == "" {
		return errNoUserKey(r.backend)
	}
	infix := r.prefix + redisUserInfix
	var failed error
	err := r.scanKeys(ctx, globEscape(infix)+"*", "zset", func(key string) bool {
		user, ok := strings.CutPrefix(key, infix)
		if !ok || user == "" {
			return true
		}
		n, err := count(user)
		if err != nil {
			failed = err
			return false
		}
		return n == 0 || fn(user, n)
	})
	if failed != nil {
		return failed
	}
	return err
}

// expiry returns when the key of the session stored as `name` expires
// (PEXPIRETIME, Redis 7: the instant, the same for every reader until the
// session is used again, which maxSessionsPerUser's order needs; PTTL from
// now on older servers), and whether the key exists. A key without a TTL
// reads as expiring now.
func (r *redisStore) expiry(ctx context.Context, name string) (time.Time, bool, error) {
	if !r.noExpireTime.Load() {
		v, err := r.client.Do(ctx, "PEXPIRETIME", r.key(name))
		switch {
		case err == nil:
			expires, live := expireTime(v.Int64())
			return expires, live, nil
		case strings.Contains(strings.ToLower(err.Error()), "unknown command"):
			r.noExpireTime.Store(true)
		default:
			return time.Time{}, false, r.wrap(err, "PEXPIRETIME", name)
		}
	}
	v, err := r.do(ctx, name, "PTTL", r.key(name))
	if err != nil {
		return time.Time{}, false, err
	}
	switch ms := v.Int64(); {
	case ms == -1:
		return time.Now(), true, nil
	case ms < 0:
		return time.Time{}, false, nil
	default:
		return time.Now().Add(time.Duration(ms) * time.Millisecond), true, nil
	}
}
