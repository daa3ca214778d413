// Package gfsession provides production-grade session storages for GoFrame
// (gf v2): memory (TypeMemory), file (TypeFile), Redis key-value (TypeRedis),
// Redis hash (TypeRedisHash) and SQL through gf's gdb (TypeDB), each
// implementing gf's gsession.Storage, and registers them by name so that a
// gf server picks one from its configuration file.
//
// With the package blank-imported,
//
//	import _ "github.com/goframe-contrib/gfsession"
//
// the `server.sessionStorage` node of gf's configuration chooses the storage:
//
//	server:
//	  sessionMaxAge: "24h"
//	  sessionStorage:
//	    type: "redis"
//	    redis: "default"
//
// The same hook makes the rest of the server node safer for sessions: a
// bare number for `sessionMaxAge` or `sessionCookieMaxAge` (gf reads 86400
// as 86.4µs) stops start-up with an error naming the key; the session cookie
// is HttpOnly and SameSite=Lax unless `cookieHttpOnly` and `cookieSameSite`
// say otherwise; a "file" storage without a `path` keeps its files in gf's
// folder for the server, `sessionPath` joined with the server's name; and a
// storage whose Redis or database does not answer at start-up is logged,
// not fatal.
//
// No storage that keeps sessions outside the process stores a session id:
// a session is stored under its handle, the SHA-256 of its id (see
// Handle), so a dump of the store holds no cookie. Every storage implements
// Admin: a user's sessions ("your devices"), sign out everywhere (else),
// online users, and with `maxSessionsPerUser` a bound on each user's
// sessions; UserSessions and SignOutOthers do the usual from a handler.
//
// Storages can also be built in code and set with ghttp's
// Server.SetSessionStorage. Custom storages register with Register and can
// check themselves against the package storagetest. What every storage
// promises (the storage contract), the stored data format and the rules of
// each backend are written in docs/design.md in the module's repository.
//
// # Writes
//
// Every storage of this package writes a session by the same rules (the
// storages' SetSession comments refer to them; docs/design.md, "The write
// path", has them in full):
//
//   - A request's write applies to the session the request loaded, and only
//     while that session is still stored. A session deleted while a request
//     that loaded it ran (a logout elsewhere, Destroy, DestroyUser, the
//     cleaner, expiry), or deleted and replaced by a new session under the
//     id, stays so: that request's write is dropped and logged, and
//     SetSession returns nil, so a request in flight cannot bring a
//     logged-out session back. Each storage makes the check in the same
//     atomic step as the write, except the file storage (see its SetSession).
//   - A RemoveAll by the same request (gf's Session.RemoveAll, then Set)
//     makes its next write start a new session, under the id or, after
//     RegenerateId, under the new one.
//   - A session written under a new id by RegenerateId keeps the creation
//     time, and so the MaxLifetime, of the one it replaces, and is written
//     only while that one is still stored (a session deleted while the
//     request ran stays deleted under the new id too); a loaded session
//     keeps its own; any other session is created when first written. No
//     write extends MaxLifetime.
//   - A write that leaves the session with no keys deletes it.
//   - Session ids are checked with IsValidSessionId before they are turned
//     into the handle that names a file, a Redis key or a row: an invalid id
//     reads as no session, and writing it is an error
//     (CodeInvalidParameter).
//   - With maxSessionsPerUser, a write that makes a session belong to a
//     user is followed by the destruction of that user's least recently
//     active sessions beyond the bound.
package gfsession

import (
	// The Redis adapter for gredis/g.Redis(), which the Redis storages use.
	_ "github.com/gogf/gf/contrib/nosql/redis/v2"
)
