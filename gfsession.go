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
// Storages can also be built in code and set with ghttp's
// Server.SetSessionStorage. Custom storages register with Register and can
// check themselves against the package storagetest. What every storage
// promises (the storage contract), the stored data format and the rules of
// each backend are written in docs/design.md in the module's repository.
package gfsession

import (
	// The Redis adapter for gredis/g.Redis(), which the Redis storages use.
	_ "github.com/gogf/gf/contrib/nosql/redis/v2"
)
