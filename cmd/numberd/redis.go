package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisOptions turns a Redis URL into client options; its errors say what is
// wrong without quoting the URL, which may hold a password. The forms:
//
//	redis://[user:password@]host:port[/db]                      one server
//	rediss://…                                                  the same over TLS
//	redis-sentinel://[user:password@]host:port[,host:port…]/master[?db=N&sentinel_password=…]
//	redis-cluster://[user:password@]host:port[,host:port…]      a cluster, by any of its nodes
func redisOptions(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL.
		return nil, errors.New("not a URL: want redis://host:port/db")
	}
	opts := &redis.UniversalOptions{
		// go-redis retries a command after a broken connection: allocate.lua keeps
		// each call's answer briefly, so a retried call answers instead of
		// allocating twice.
		MaxRetries:            2,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		PoolTimeout:           2 * time.Second,
		ContextTimeoutEnabled: true,
	}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		if h == "" || !strings.Contains(h, ":") {
			return nil, fmt.Errorf("%q is not host:port", h)
		}
	}
	q := u.Query()
	switch u.Scheme {
	case "redis", "rediss":
		if len(hosts) != 1 {
			return nil, errors.New("redis:// names one server; use redis-sentinel:// or redis-cluster:// for several")
		}
		opts.Addrs = hosts
		if opts.DB, err = dbNumber(strings.TrimPrefix(u.Path, "/")); err != nil {
			return nil, err
		}
		if u.Scheme == "rediss" {
			return nil, errors.New("rediss:// (TLS) is not supported yet; use a TLS-terminating proxy")
		}
	case "redis-sentinel":
		opts.Addrs = hosts
		opts.MasterName = strings.TrimPrefix(u.Path, "/")
		if opts.MasterName == "" {
			return nil, errors.New("redis-sentinel:// needs the master's name as its path (…/mymaster)")
		}
		if opts.DB, err = dbNumber(q.Get("db")); err != nil {
			return nil, err
		}
		opts.SentinelPassword = q.Get("sentinel_password")
	case "redis-cluster":
		opts.Addrs = hosts
		if len(hosts) == 1 {
			// One seed address would make NewUniversalClient pick a plain client.
			opts.Addrs = append(hosts, hosts[0])
		}
	default:
		return nil, fmt.Errorf("scheme must be redis, redis-sentinel or redis-cluster, not %q", u.Scheme)
	}
	return opts, nil
}

// dbNumber reads the database number of a Redis URL; empty is 0.
func dbNumber(s string) (int, error) {
	n := 0
	if k := whole(&n, 0, 0, math.MaxInt32); s != "" && !k.set(s) {
		return 0, fmt.Errorf("database %q: want %s", s, k.form)
	}
	return n, nil
}

// newRedis connects to the Redis deployment of raw: one server, Sentinel or Cluster.
func newRedis(raw string) (redis.UniversalClient, error) {
	opts, err := redisOptions(raw)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(raw, "redis-cluster://") {
		return redis.NewClusterClient(opts.Cluster()), nil
	}
	return redis.NewUniversalClient(opts), nil
}

// redisWhere names the Redis deployment of raw, a URL newRedis took, for messages:
// its scheme, addresses and path, without the user, the password or the query
// (which may hold sentinel_password).
func redisWhere(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(the --redis URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// redisLogger turns go-redis's own messages (dial failures and the like) into
// structured log lines at debug level: the engine logs what matters to an
// operator, once per event.
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
