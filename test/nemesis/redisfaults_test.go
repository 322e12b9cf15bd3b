package nemesis_test

// The nemesis's Redis faults, composed of the primitives of test/harness/faults.go
// (which report errors instead of failing the test, as the nemesis runs them off
// the test's goroutine) for a primary that numberd reaches through a proxy and its
// replica.

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/test/harness"
)

// redisPair is the Redis of the system under test: a primary that numberd reaches
// through a proxy, and its replica, the target of failovers.
type redisPair struct {
	primary    *harness.Redis
	replica    *harness.Redis
	proxy      *harness.Proxy // numberd's way to the primary
	cp         *redis.Client  // the nemesis's own connection to the primary
	paused     bool           // the primary is SIGSTOPped
	evicting   bool           // maxmemory is set on the primary
	fillerKeys int
}

func newRedisPair(primary, replica *harness.Redis, proxy *harness.Proxy) *redisPair {
	return &redisPair{primary: primary, replica: replica, proxy: proxy,
		cp: redis.NewClient(&redis.Options{Addr: primary.Addr(), MaxRetries: -1, DialTimeout: time.Second})}
}

func (r *redisPair) close() { _ = r.cp.Close() }

func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// syncTimeout bounds a resync of one server from the other.
const syncTimeout = 15 * time.Second

// flushAll forgets everything (FLUSHALL on the primary, which the replica follows).
func (r *redisPair) flushAll() error {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	return r.primary.FlushAll(ctx)
}

// ping reports whether the primary answers.
func (r *redisPair) ping() error {
	ctx, cancel := ctxFor(2 * time.Second)
	defer cancel()
	return r.cp.Ping(ctx).Err()
}

// kill kills the primary with SIGKILL; start starts it again, empty, on its port
// and waits until the replica has resynced (to an empty data set).
func (r *redisPair) kill() {
	r.primary.Kill()
	r.paused = false
}

func (r *redisPair) start() error {
	if err := try(r.primary.Start); err != nil {
		return err
	}
	ctx, cancel := ctxFor(syncTimeout)
	defer cancel()
	return harness.AwaitSync(ctx, r.primary, r.replica)
}

// pause stops the primary with SIGSTOP: connections stay open, commands queue up
// unanswered, and run when resume sends SIGCONT.
func (r *redisPair) pause() error {
	err := r.primary.Pause()
	r.paused = err == nil
	return err
}

func (r *redisPair) resume() error {
	if !r.paused {
		return nil
	}
	r.paused = false
	return r.primary.Resume()
}

// replicaFollows reports whether the replica is a replica of the primary.
func (r *redisPair) replicaFollows() bool {
	ctx, cancel := ctxFor(2 * time.Second)
	defer cancel()
	info, err := r.replica.Info(ctx, "replication")
	return err == nil && info["role"] == "slave" && info["master_port"] == strconv.Itoa(r.primary.Port)
}

// detachReplica promotes the replica once it has caught up: from now on it lags
// behind the primary, holding the data of this moment. The start of both
// failovers below.
func (r *redisPair) detachReplica() error {
	ctx, cancel := ctxFor(syncTimeout)
	defer cancel()
	return harness.Split(ctx, r.primary, r.replica)
}

// switchToReplica points numberd's proxy at the detached, lagging replica: a
// failover that lost what the primary took since the detach.
func (r *redisPair) switchToReplica() error {
	return try(func() { r.proxy.Retarget(r.replica.Addr()) })
}

// switchBack ends a failover to the replica the way Sentinel fails back: the old
// primary follows the new one and syncs, is promoted again and numberd's proxy
// points at it; the other follows it again. The old primary keeps its run id;
// its replication id changes.
func (r *redisPair) switchBack() error {
	if err := r.resyncPrimaryFromReplica(); err != nil {
		return err
	}
	if err := try(func() { r.proxy.Retarget(r.primary.Addr()) }); err != nil {
		return err
	}
	return r.reattachReplica()
}

// resyncPrimaryFromReplica makes the primary follow the detached replica until it
// has the replica's (older) data, and promotes it again: the rollback in place that
// Sentinel's failover and back makes, numberd's connections never moving.
func (r *redisPair) resyncPrimaryFromReplica() error {
	ctx, cancel := ctxFor(syncTimeout)
	defer cancel()
	return harness.FailBack(ctx, r.primary, r.replica)
}

// reattachReplica makes the replica follow the primary again and waits until it
// has caught up.
func (r *redisPair) reattachReplica() error {
	ctx, cancel := ctxFor(syncTimeout)
	defer cancel()
	return harness.Follow(ctx, r.replica, r.primary)
}

// pattern matches numberd's keys of pool, "" for every pool.
func pattern(pool string) string {
	if pool == "" {
		return "numberd:*"
	}
	return "numberd:{" + pool + "}:*"
}

// dump DUMPs numberd's keys of pool ("" for all), for restore to put back later:
// a backup of the keys restored into the live server.
func (r *redisPair) dump(pool string) (harness.KeyDump, error) {
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	return r.primary.DumpKeys(ctx, pattern(pool))
}

// restore RESTOREs keys, REPLACE-ing what is there.
func (r *redisPair) restore(keys harness.KeyDump) error {
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	return r.primary.RestoreKeys(ctx, keys)
}

// del deletes one key of pool: its meta or seg hash, or one of its idempotency
// records (which chosen by rng), as the eviction of one key would.
func (r *redisPair) del(pool, which string, rng *rand.Rand) (string, error) {
	ctx, cancel := ctxFor(5 * time.Second)
	defer cancel()
	key := "numberd:{" + pool + "}:" + which
	if which == "idem" {
		keys, err := r.primary.Keys(ctx, key+":*")
		if err != nil {
			return "", err
		}
		if len(keys) == 0 {
			return "(no idempotency record)", nil
		}
		// SCAN's order is the server's: sorted, rng's pick is the seed's.
		slices.Sort(keys)
		key = keys[rng.IntN(len(keys))]
	}
	n, err := r.primary.DelKeys(ctx, key)
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
	before, err := r.primary.InfoInt(ctx, "stats", "evicted_keys")
	if err != nil {
		return 0, nil, err
	}
	used, err := r.primary.UsedMemory(ctx)
	if err != nil {
		return 0, nil, err
	}
	if err := r.primary.SetMaxMemory(ctx, used, "allkeys-random"); err != nil {
		return 0, nil, err
	}
	r.evicting = true
	filler := strings.Repeat("x", fillerSize)
	for r.fillerKeys < maxFillers {
		// A write Redis cannot make room for answers OOM: pressure enough.
		_ = r.cp.Set(ctx, fillerKey+strconv.Itoa(r.fillerKeys), filler, 0).Err()
		r.fillerKeys++
		if r.fillerKeys%10 == 0 {
			now, err := r.primary.InfoInt(ctx, "stats", "evicted_keys")
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

// unevict lifts the memory limit and deletes the filler keys.
func (r *redisPair) unevict() error {
	if !r.evicting {
		return nil
	}
	ctx, cancel := ctxFor(10 * time.Second)
	defer cancel()
	if err := r.primary.SetMaxMemory(ctx, 0, "noeviction"); err != nil {
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
