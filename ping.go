package gfsession

import (
	"context"
	"database/sql"
	"net"
	"strings"
	"time"

	"github.com/gogf/gf/v2/os/gsession"
	"github.com/redis/go-redis/v9"
)

// backendCheckTimeout bounds the start-up check of a storage's backend, so
// that a backend that does not answer (a firewall dropping packets) delays
// start-up by at most this much.
const backendCheckTimeout = 2 * time.Second

// checkBackend checks once that the backend of `storage`, built by New as
// storage type `typeName`, answers: a PING for Redis, a ping of the
// connection pool for a database. When it does not, it logs a warning that
// names the backend and its address, and nothing else happens: the storage
// works as soon as the backend does, and an outage must not stop a deploy.
// Storages without a network backend are not checked.
func checkBackend(ctx context.Context, typeName string, storage gsession.Storage) {
	var (
		backend, addr string
		ping          func(ctx context.Context) error
	)
	switch s := storage.(type) {
	case *StorageRedis:
		backend, addr, ping = redisCheck(s.r)
	case *StorageRedisHash:
		backend, addr, ping = redisCheck(s.r)
	case *StorageDB:
		backend, addr, ping = dbCheck(s)
	}
	if ping == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, backendCheckTimeout)
	defer cancel()
	if err := waitBounded(ctx, ping); err != nil {
		startupLogger().Warningf(ctx,
			`gfsession: %s storage: %s at %s does not answer (%v); starting anyway: sessions fail until it does`,
			typeName, backend, addr, err)
	}
}

// redisCheck returns how to check the Redis of `r`, and its address(es).
func redisCheck(r *redisStore) (backend, addr string, ping func(ctx context.Context) error) {
	addr = "(address unknown)"
	switch c := r.raw.(type) {
	case *redis.Client:
		if a := c.Options().Addr; a != "FailoverClient" {
			addr = a
		} else {
			addr = "the master given by Sentinel"
		}
	case *redis.ClusterClient:
		addr = strings.Join(c.Options().Addrs, ",")
	}
	return "Redis", addr, func(ctx context.Context) error {
		_, err := r.client.Do(ctx, "PING")
		return err
	}
}

// dbCheck returns how to check the database of `s`, and its address. It
// returns no check for SQLite, a file on this machine.
func dbCheck(s *StorageDB) (backend, addr string, ping func(ctx context.Context) error) {
	node := s.db.GetConfig()
	if node == nil || s.dialect == dialectSQLite {
		return "", "", nil
	}
	addr = node.Host
	if node.Port != "" {
		addr = net.JoinHostPort(node.Host, node.Port)
	}
	if node.Name != "" {
		addr += "/" + node.Name
	}
	return node.Type, addr, func(ctx context.Context) error {
		var (
			pool *sql.DB
			err  error
		)
		if s.startPinged {
			// NewStorageDB has just pinged it, to create the table.
			err = s.startPingErr
		} else if pool, err = s.db.Master(); err == nil {
			err = pool.PingContext(ctx)
		}
		if err != nil && node.Pass != "" {
			// A driver's error may quote the connection string.
			return redactedError{err: err, secret: node.Pass}
		}
		return err
	}
}

// redactedError is an error whose message has `secret` blanked out.
type redactedError struct {
	err    error
	secret string
}

func (e redactedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.secret, "xxx")
}

func (e redactedError) Unwrap() error { return e.err }

// waitBounded calls `fn` with `ctx` and waits for it only until `ctx` is
// done. Some drivers (lib/pq while it connects) do not watch the context,
// so `fn` runs on a goroutine of its own, which ends when the driver gives
// up; its result is then dropped.
func waitBounded(ctx context.Context, fn func(ctx context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
