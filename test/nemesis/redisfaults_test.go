//go:build nemesis

package nemesis_test

// Redis fault primitives the nemesis needs and test/harness does not have (yet):
// they may move to test/harness/faults.go later. Each works on a primary and its
// replica, both harness.Redis processes, and returns errors rather than failing
// the test, as the nemesis runs them off the test's goroutine.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/test/harness"
)

// redisPair is the Redis of the system under test: a primary that numberd reaches
// through a proxy, and its replica, the target of failovers.
type redisPair struct {
	tb         softTB
	primary    *harness.Redis
	replica    *harness.Redis
	proxy      *harness.Proxy // numberd's way to the primary
	cp, cr     *redis.Client  // the nemesis's own connections
	pausedPID  int            // a SIGSTOPped server's process, 0 if none
	evicting   bool           // maxmemory is set on the primary
	fillerKeys int
}

func newRedisPair(tb softTB, primary, replica *harness.Redis, proxy *harness.Proxy) *redisPair {
	opts := func(addr string) *redis.Options {
		return &redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	}
	return &redisPair{tb: tb, primary: primary, replica: replica, proxy: proxy,
		cp: redis.NewClient(opts(primary.Addr())), cr: redis.NewClient(opts(replica.Addr()))}
}

func (r *redisPair) close() {
	_ = r.cp.Close()
	_ = r.cr.Close()
}

func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// flushAll forgets everything (FLUSHALL on the primary, which the replica follows).
func (r *redisPair) flushAll() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	return r.cp.FlushAll(ctx).Err()
}

// ping reports whether the primary answers.
func (r *redisPair) ping() error {
	ctx, cancel := ctxFor(2 * time.Second)
	defer cancel()
	return r.cp.Ping(ctx).Err()
}

// replicaFollows reports whether the replica is a replica of the primary.
func (r *redisPair) replicaFollows() bool {
	ctx, cancel := ctxFor(2 * time.Second)
	defer cancel()
	info, err := r.replica.Info(ctx, "replication")
	return err == nil && info["role"] == "slave" && info["master_port"] == strconv.Itoa(r.primary.Port)
}

// kill kills the primary with SIGKILL; start starts it again, empty, on its port
// and waits until the replica has resynced (to an empty data set).
func (r *redisPair) kill() { r.primary.Kill() }

func (r *redisPair) start() error {
	if err := try(r.primary.Start); err != nil {
		return err
	}
	return r.waitReplicaInSync()
}

func (r *redisPair) waitReplicaInSync() error {
	return try(func() { harness.WaitInSync(r.tb, r.primary, r.replica) })
}

// pause stops the primary's process with SIGSTOP: connections stay open, commands
// queue up unanswered, and run when resume sends SIGCONT.
func (r *redisPair) pause() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	info, err := r.primary.Info(ctx, "server")
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(info["process_id"])
	if err != nil {
		return fmt.Errorf("process_id %q: %v", info["process_id"], err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	r.pausedPID = pid
	return nil
}

func (r *redisPair) resume() error {
	if r.pausedPID == 0 {
		return nil
	}
	err := syscall.Kill(r.pausedPID, syscall.SIGCONT)
	r.pausedPID = 0
	return err
}

func replicaOf(ctx context.Context, c *redis.Client, primary *harness.Redis) error {
	if primary == nil {
		return c.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
	}
	return c.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(primary.Port)).Err()
}

// detachReplica promotes the replica (REPLICAOF NO ONE): from now on it lags
// behind the primary, holding the data of this moment. It is the start of both
// failovers below.
func (r *redisPair) detachReplica() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	return replicaOf(ctx, r.cr, nil)
}

// switchToReplica points numberd's proxy at the detached, lagging replica: a
// failover that lost what the primary took since the detach.
func (r *redisPair) switchToReplica() error {
	return try(func() { r.proxy.Retarget(r.replica.Addr()) })
}

// switchBack ends a failover to the replica the way Sentinel fails back: the old
// primary becomes a replica of the new one and syncs, is promoted again and
// numberd's proxy points at it; the other follows it again. The old primary keeps
// its run id; its replication id changes.
func (r *redisPair) switchBack() error {
	if err := r.resyncPrimaryFromReplica(); err != nil {
		return err
	}
	if err := try(func() { r.proxy.Retarget(r.primary.Addr()) }); err != nil {
		return err
	}
	return r.reattachReplica()
}

// resyncPrimaryFromReplica makes the primary a replica of the detached replica,
// waits until it has the replica's (older) data, and promotes it again: the
// rollback in place of issue 13's finding 1, numberd's connections never moving.
func (r *redisPair) resyncPrimaryFromReplica() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	if err := replicaOf(ctx, r.cp, r.replica); err != nil {
		return err
	}
	if err := try(func() { harness.WaitInSync(r.tb, r.replica, r.primary) }); err != nil {
		return err
	}
	return replicaOf(ctx, r.cp, nil)
}

// reattachReplica makes the replica follow the primary again and waits until it
// has caught up.
func (r *redisPair) reattachReplica() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	if err := replicaOf(ctx, r.cr, r.primary); err != nil {
		return err
	}
	return r.waitReplicaInSync()
}

// dumped is one key's DUMP with its time to live.
type dumped struct {
	key  string
	data string
	ttl  time.Duration // <= 0: none
}

// keysOf lists numberd's keys of pool ("" for every pool) on the primary.
func (r *redisPair) keysOf(ctx context.Context, pool string) ([]string, error) {
	match := "numberd:*"
	if pool != "" {
		match = "numberd:{" + pool + "}:*"
	}
	var keys []string
	iter := r.cp.Scan(ctx, 0, match, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	slices.Sort(keys)
	return slices.Compact(keys), iter.Err()
}

// dump DUMPs numberd's keys of pool ("" for all), for restore to put back later:
// a backup of the keys restored into the live server.
func (r *redisPair) dump(pool string) ([]dumped, error) {
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	keys, err := r.keysOf(ctx, pool)
	if err != nil {
		return nil, err
	}
	pipe := r.cp.Pipeline()
	dumps := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		dumps[i], ttls[i] = pipe.Dump(ctx, k), pipe.PTTL(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []dumped
	for i, k := range keys {
		data, err := dumps[i].Result()
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, dumped{key: k, data: data, ttl: ttls[i].Val()})
	}
	return out, nil
}

// restore RESTOREs keys dumped at dumpedAt, REPLACE-ing what is there; a key whose
// time to live ran out since is left out.
func (r *redisPair) restore(keys []dumped, dumpedAt time.Time) (int, error) {
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	pipe := r.cp.Pipeline()
	n := 0
	for _, d := range keys {
		ttl := time.Duration(0)
		if d.ttl > 0 {
			if ttl = d.ttl - time.Since(dumpedAt); ttl <= time.Millisecond {
				continue
			}
		}
		pipe.RestoreReplace(ctx, d.key, ttl, d.data)
		n++
	}
	_, err := pipe.Exec(ctx)
	return n, err
}

// del deletes one key of pool: its meta or seg hash, or one of its idempotency
// records (which chosen by rng), as the eviction of one key would.
func (r *redisPair) del(pool, which string, rng *rand.Rand) (string, error) {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	key := "numberd:{" + pool + "}:" + which
	if which == "idem" {
		keys, err := r.keysOf(ctx, pool)
		if err != nil {
			return "", err
		}
		keys = slices.DeleteFunc(keys, func(k string) bool { return !strings.HasPrefix(k, key+":") })
		if len(keys) == 0 {
			return "(no idempotency record)", nil
		}
		key = keys[rng.IntN(len(keys))]
	}
	n, err := r.cp.Del(ctx, key).Result()
	if err == nil && n == 0 {
		key += " (absent)"
	}
	return key, err
}

// fillerKey names the keys evict writes; fillerSize is each one's size.
const (
	fillerKey  = "nemesis:fill:"
	fillerSize = 8 << 10
)

// evict puts the primary under memory pressure: maxmemory at what it uses now,
// policy allkeys-random, then filler keys until it has evicted at least
// minEvicted keys (or written maxFillers). Until unevict, every write numberd
// makes evicts random keys too. It returns the keys evicted and which of the
// pools' meta and seg hashes are gone.
func (r *redisPair) evict() (evicted int64, gone []string, err error) {
	const minEvicted, maxFillers = 100, 2000
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	before, err := r.evictedKeys(ctx)
	if err != nil {
		return 0, nil, err
	}
	mem, err := r.primary.Info(ctx, "memory")
	if err != nil {
		return 0, nil, err
	}
	if err := r.cp.ConfigSet(ctx, "maxmemory-policy", "allkeys-random").Err(); err != nil {
		return 0, nil, err
	}
	if err := r.cp.ConfigSet(ctx, "maxmemory", mem["used_memory"]).Err(); err != nil {
		return 0, nil, err
	}
	r.evicting = true
	filler := string(make([]byte, fillerSize))
	for r.fillerKeys < maxFillers {
		// A write Redis cannot make room for answers OOM: pressure enough.
		_ = r.cp.Set(ctx, fillerKey+strconv.Itoa(r.fillerKeys), filler, 0).Err()
		r.fillerKeys++
		if r.fillerKeys%10 == 0 {
			now, err := r.evictedKeys(ctx)
			if err != nil {
				return 0, nil, err
			}
			if evicted = now - before; evicted >= minEvicted {
				break
			}
		}
	}
	for _, p := range testPools {
		for _, k := range []string{"meta", "seg"} {
			key := "numberd:{" + p.name + "}:" + k
			if n, err := r.cp.Exists(ctx, key).Result(); err == nil && n == 0 {
				gone = append(gone, key)
			}
		}
	}
	return evicted, gone, nil
}

func (r *redisPair) evictedKeys(ctx context.Context) (int64, error) {
	stats, err := r.primary.Info(ctx, "stats")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(stats["evicted_keys"], 10, 64)
}

// unevict lifts the memory limit and deletes the filler keys.
func (r *redisPair) unevict() error {
	if !r.evicting {
		return nil
	}
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	if err := r.cp.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		return err
	}
	if err := r.cp.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		return err
	}
	r.evicting = false
	pipe := r.cp.Pipeline()
	for i := range r.fillerKeys {
		pipe.Unlink(ctx, fillerKey+strconv.Itoa(i))
	}
	r.fillerKeys = 0
	_, err := pipe.Exec(ctx)
	return err
}
