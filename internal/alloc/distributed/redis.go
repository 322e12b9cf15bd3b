// Package distributed is numberd's engine of distributed mode: every node
// shares each pool's hot counter in Redis, changed only by the Lua scripts of
// scripts/lua, and its segments, durable high-water marks and gaps in MySQL. It
// detects a Redis state that went back or lost keys, reseeds it above every mark
// anyone observed, and settles the calls whose answers were lost.
package distributed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/scripts/lua"
)

// RedisClient is what the distributed engine needs of Redis: a Client, a
// FailoverClient (Sentinel) and a ClusterClient all fit.
type RedisClient interface {
	redis.Scripter
	Ping(ctx context.Context) *redis.StatusCmd
	Pipeline() redis.Pipeliner
	HSet(ctx context.Context, key string, values ...any) *redis.IntCmd
	HDel(ctx context.Context, key string, fields ...string) *redis.IntCmd
	HMGet(ctx context.Context, key string, fields ...string) *redis.SliceCmd
	Time(ctx context.Context) *redis.TimeCmd
}

// Tuning of the distributed engine.
const (
	// maxBatch bounds the requests one allocate call carries.
	maxBatch = 512
	// lockTTL is the lease lock's lifetime; a holder that stops is replaced after
	// it. Holders need milliseconds; what a slow one does late is refused anyway.
	lockTTL = 2 * time.Second
	// redisTimeout bounds one script call off the request path; go-redis retries
	// within it. An allocate call is bounded by its requests' deadline instead.
	redisTimeout = 3 * time.Second
	// maxRounds bounds the allocate calls one request makes: floors to read
	// again, a state that needs a reseed, a lease, a sync, and then one more try.
	// A request that needs more meets a pool whose state keeps changing, and
	// answers unavailable.
	maxRounds = 7
	// tombstoneAge is how long a given-up call's memo place stays taken (see
	// resolve.lua): far longer than a call can linger in a socket or a paused
	// server.
	tombstoneAge = time.Hour
)

var scripts = struct {
	allocate, seed, lease, add, retire, peek, resolve, orphans, lock, unlock *redis.Script
}{
	redis.NewScript(lua.Allocate), redis.NewScript(lua.Seed), redis.NewScript(lua.Lease), redis.NewScript(lua.Add),
	redis.NewScript(lua.Retire), redis.NewScript(lua.Peek), redis.NewScript(lua.Resolve), redis.NewScript(lua.Orphans), redis.NewScript(lua.Lock),
	redis.NewScript(lua.Unlock),
}

// Engine is the engine of distributed mode: the hot counter of every pool
// lives in Redis, allocated by one Lua script per batch of concurrent requests,
// and no number is handed out above the durable high-water mark that the shared
// MySQL store holds. Any number of nodes may share one Redis and one store.
//
// Redis may forget (restart, flush, eviction of any key) or go back in time
// (failover to a lagging replica, a failover and back, keys restored from a dump).
// A pool's Redis state is stamped with the run id and replication id of the Redis
// process it was seeded on, with the store's seed generation, and with a version
// raised by every change; each node remembers the newest version it saw. A state
// that is missing, partial, foreign, of an older generation or older than a
// version a node saw is reseeded from the store above every mark anyone observed
// (the store's high-water marks, what Redis shows, what the node saw), with the
// skipped numbers recorded as a recovery gap. Seeds hand out nothing until the
// store reserves numbers and the lease is raised, and a lease is raised only where
// Redis and the store agree, so a late seed or a stale state can never be given
// numbers handed out before.
//
// An allocate call whose answer is lost may still run; resolver settles it once
// Redis answers again, so that every number it took is accounted for.
//
// The engine's work is split by job: catalog (the pools a node knows and their
// segments), batcher (the allocate calls of each pool, batched), pipeline (their
// round trips to Redis, shared by all pools), floorReader (the store's floors
// an allocate call brings), leaser (lease extensions and reseeds), recorder (what
// the store must hold of keyed answers and numbers given up), resolver (calls
// whose answers were lost, and the work other nodes left) and admin (status,
// segments, expiry sweeps and checkpoints). Engine wires them together.
type Engine struct {
	rdb   RedisClient
	store stores
	opts  alloc.Options
	life  life
	names namer

	pools    *catalog
	batches  *batcher
	pipe     *pipeline
	floors   *floorReader
	leases   *leaser
	records  *recorder
	resolver *resolver
	admin    *admin
	unsure   *unsettled // allocate calls whose outcome is unknown, until settled
}

var _ numberd.Engine = (*Engine)(nil)

// life is what the engine's parts share of its lifetime: Close sets closed,
// closes stop, and waits for wg, which counts the work they start.
type life struct {
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// namer names this node's allocate calls and its entries of unsettled work.
type namer struct {
	node string        // this node's token in lease locks
	seq  atomic.Uint64 // numbers this node's allocate calls; see callID
}

// callID names a new allocate call, and so its memo: the node's token and a
// sequence number, unique across nodes without drawing randomness per call.
func (n *namer) callID() string {
	return n.node + "-" + strconv.FormatUint(n.seq.Add(1), 10)
}

// entryID names an entry of unsettled work that is not an allocate call.
func (n *namer) entryID() string {
	return n.node + "-u" + strconv.FormatUint(n.seq.Add(1), 10)
}

// Open starts the distributed engine on rdb and st, loading the scripts
// into Redis.
func Open(ctx context.Context, rdb RedisClient, st *store.Store, opts alloc.Options) (*Engine, error) {
	if opts.CheckpointEvery <= 0 {
		// Other nodes learn from the checkpoint how far each pool went (see
		// rpool.ckpt): a state restored from older keys is refused once they have.
		opts.CheckpointEvery = time.Second
	}
	e := &Engine{rdb: rdb, store: storesOf(st), opts: opts.WithDefaults(), names: namer{node: randomToken()}}
	e.life.stop = make(chan struct{})
	e.wire()
	for _, s := range []*redis.Script{scripts.allocate, scripts.seed, scripts.lease, scripts.add, scripts.retire, scripts.peek, scripts.resolve, scripts.orphans, scripts.lock, scripts.unlock} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, redisErr(err)
		}
	}
	e.opts.Metrics.WatchPools(e.pools.gauges)
	e.life.wg.Add(2)
	go e.admin.janitor()
	go e.resolver.run()
	return e, nil
}

// wire makes the engine's parts, each given what it needs of the others.
func (e *Engine) wire() {
	rdb, st, opts, lf, names := e.rdb, e.store, &e.opts, &e.life, &e.names
	e.unsure = &unsettled{wake: make(chan struct{}, 1)}
	e.pools = &catalog{store: st, opts: opts, life: lf}
	e.pipe = &pipeline{rdb: rdb, opts: opts}
	e.floors = &floorReader{rdb: rdb, store: st, opts: opts}
	e.records = &recorder{store: st, opts: opts, pools: e.pools, unsure: e.unsure}
	e.records.lookup.Run = st.records.Find
	e.records.idem.Run = st.records.Keep
	e.leases = &leaser{rdb: rdb, store: st, opts: opts, life: lf, names: names, unsure: e.unsure}
	e.admin = &admin{rdb: rdb, store: st, opts: opts, life: lf, names: names, pipe: e.pipe, pools: e.pools, leases: e.leases}
	e.batches = &batcher{opts: opts, life: lf, names: names, pipe: e.pipe, pools: e.pools, floors: e.floors, leases: e.leases, records: e.records, admin: e.admin, unsure: e.unsure}
	e.resolver = &resolver{rdb: rdb, store: st, opts: opts, life: lf, names: names, pipe: e.pipe, pools: e.pools, records: e.records, unsure: e.unsure}
}

func randomToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redisErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", numberd.ErrRedisUnavailable, err)
}

// Close stops the engine. Pools' Redis state stays: another node, or this one
// restarted, goes on from it without a gap.
func (e *Engine) Close(ctx context.Context) error {
	if e.life.closed.Swap(true) {
		return nil
	}
	close(e.life.stop)
	done := make(chan struct{})
	go func() { e.life.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return e.admin.checkpoint(ctx)
}
