package gfsession

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/gogf/gf/v2/util/gconv"
)

// hashUserIndexScript records a login in a user index, as userIndexScript
// does, and returns the entry's score as a string: now plus the fraction
// given, or, if the entry already has a score at least that, a score above
// it, so that every login of a session gets a score of its own. KEYS[1] is
// the user's index; ARGV: session id, now (Unix ms, with a fraction), index
// TTL ms.
var hashUserIndexScript = newRedisScript(`
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
local score = now
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) >= score then score = math.floor(tonumber(old)) + 1 + (now % 1) end
redis.call('ZADD', KEYS[1], score, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return string.format('%.17g', score)
`)

// hashUserUnindexScript removes session ARGV[1] from the user index
// KEYS[1] if its entry has the score ARGV[2] ("": any score), returning 1,
// else 0.
var hashUserUnindexScript = newRedisScript(`
if ARGV[2] ~= '' then
  local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
end
return redis.call('ZREM', KEYS[1], ARGV[1])
`)

// indexUser records session `id` in the index of user `userId` (one script
// call) and returns the entry's score, to be stored with the user.
func (s *StorageRedisHash) indexUser(ctx context.Context, userId, id string) (string, error) {
	r := s.r
	// A random fraction of a millisecond, so that two logins of a session
	// in one millisecond, its entry removed in between, still differ.
	now := float64(time.Now().UnixMilli()) + float64(1+mrand.IntN(1023))/1024
	v, cmd, err := r.evalKey(ctx, hashUserIndexScript, r.userIndexKey(userId),
		id, strconv.FormatFloat(now, 'f', -1, 64), millis(r.userIndexTTL))
	if err != nil {
		return "", r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	return v.String(), nil
}

// hashUserConfirmScript adds session ARGV[1] to the user index KEYS[1]
// with the score ARGV[2] if it has no entry there, and makes the index live
// at least ARGV[3] ms, returning 1; an existing entry is left alone (0).
var hashUserConfirmScript = newRedisScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`)

// confirmUser makes sure, after a login's write stored session `id` under
// user `userId` with index score `uidx`, that the user's index still lists
// the session (one script call): a DestroyUser that read the entry and
// found the session without the user, before the write, removes the entry
// (and checks the session again after, see redisStore.destroyUser), so
// the entry is added back with its score if it is missing.
func (s *StorageRedisHash) confirmUser(ctx context.Context, userId, id, uidx string) error {
	r := s.r
	_, cmd, err := r.evalKey(ctx, hashUserConfirmScript, r.userIndexKey(userId), id, uidx, millis(r.userIndexTTL))
	if err != nil {
		return r.wrapKey(err, cmd, r.shownUserIndex(userId))
	}
	return nil
}

// setsUser reports whether the field/value pairs `set` write the user key.
func (s *StorageRedisHash) setsUser(set []any) bool {
	if s.r.userKey == "" {
		return false
	}
	field := hashField(s.r.userKey)
	for i := 0; i < len(set); i += 2 {
		if set[i] == field {
			return true
		}
	}
	return false
}

// unindexUser removes session `id` from the index of user `userId` if its
// entry has the score `uidx` (as loaded; "": any score: a session whose
// login predates hashUserIndexField). It is best effort: an entry it
// fails to remove is stale, and DestroyUser, or the trim of the user's next
// login, drops it.
func (s *StorageRedisHash) unindexUser(ctx context.Context, userId, id, uidx string) {
	if userId == "" {
		return
	}
	r := s.r
	_, _, _ = r.evalKey(ctx, hashUserUnindexScript, r.userIndexKey(userId), id, uidx)
}

// DestroyUser deletes every session whose RedisConfig.UserKey value equals
// `userId` and returns how many it deleted. It reads the user's index (one
// script call), reads the user field of each session listed (HMGET) and deletes
// the session only if the field still holds that user, atomically (a script
// deleting the key only if the field is unchanged); entries found stale are
// not counted. The read entries are then removed from the index. It costs
// about two round trips per indexed session. Without a UserKey it fails
// with CodeInvalidOperation.
func (s *StorageRedisHash) DestroyUser(ctx context.Context, userId string) (int, error) {
	return s.DestroyUserExcept(ctx, userId, "")
}

// DestroyUserExcept is DestroyUser sparing the session whose handle is
// `keep`, whose index entry stays too.
func (s *StorageRedisHash) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	r := s.r
	field := hashField(r.userKey)
	return r.destroyUser(ctx, userId, keep, func(id string) (bool, error) {
		for try := 0; try < redisCASTries; try++ {
			v, err := r.do(ctx, id, "HMGET", r.key(id), field, hashCreatedField)
			if err != nil {
				return false, err
			}
			got := v.Strings()
			if len(got) != 2 || got[0] == "" {
				return false, nil
			}
			created, cerr := strconv.ParseInt(got[1], 10, 64)
			user, err := s.decodeValue(id, r.userKey, time.UnixMilli(created), got[0])
			if err != nil || userOf(map[string]any{r.userKey: user}, r.userKey) != userId {
				return false, nil
			}
			res, err := r.eval(ctx, hashDeleteIfScript, id, field, got[0])
			if err != nil {
				return false, err
			}
			if res.Int() == 1 {
				live := cerr != nil || r.maxLifetime <= 0 ||
					time.UnixMilli(created).Add(r.maxLifetime).After(time.Now())
				return live, nil
			}
		}
		return false, r.errKeepsChanging(id)
	})
}

// hashDeleteIfScript deletes KEYS[1] if its field ARGV[1] holds ARGV[2],
// returning 1, else 0.
var hashDeleteIfScript = newRedisScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// probe is how Sessions reads a session of StorageRedisHash for user
// `userId`: an HMGET of the user field, the creation time and the client
// field (see judgeSession).
func (s *StorageRedisHash) probe(userId string) sessionProbe {
	field := hashField(s.r.userKey)
	return sessionProbe{
		args: func(key string) []any { return []any{"HMGET", key, field, hashCreatedField, hashClientField} },
		judge: func(name string, reply any) (SessionInfo, bool) {
			return s.judgeSession(name, userId, gconv.Strings(reply))
		},
	}
}

// judgeSession tells from `got`, the user field, creation time and client
// field of the hash of the session stored as `name`, whether it is live and
// names user `userId`, with what Sessions shows of it.
func (s *StorageRedisHash) judgeSession(name, userId string, got []string) (SessionInfo, bool) {
	r := s.r
	{
		if len(got) != 3 || got[0] == "" {
			return SessionInfo{}, false
		}
		var created time.Time
		if ms, err := strconv.ParseInt(got[1], 10, 64); err == nil {
			created = time.UnixMilli(ms)
		}
		user, err := s.decodeValue(name, r.userKey, created, got[0])
		if err != nil || userOf(map[string]any{r.userKey: user}, r.userKey) != userId ||
			lifetimeLeft(created, r.maxLifetime, time.Hour, time.Now()) <= 0 {
			return SessionInfo{}, false
		}
		info := SessionInfo{Created: created}
		if got[2] != "" {
			if c, err := r.env.decodeValue(name, hashClientField, got[2]); err == nil {
				info.ClientIP, info.UserAgent = splitClient(fmt.Sprint(c))
			}
		}
		return info, true
	}
}
