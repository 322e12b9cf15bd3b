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
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
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
	// memoTTL is how long an allocate call's answer is kept: for a retry of the
	// call, and for the resolver when its answer was lost, which must find it
	// after the longest outage a node rides out. The node deletes the memo of
	// every call whose answer it got (with its pool's next call), so what stays
	// is one memo a pool and the memos of lost answers.
	memoTTL = 3600
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
	// tombstoneTTL is how long a given-up call's memo place stays taken (see
	// resolve.lua): far longer than a call can linger in a socket or a paused
	// server.
	tombstoneTTL = 3600
)

var scripts = struct {
	allocate, seed, lease, add, retire, peek, resolve, lock, unlock *redis.Script
}{
	redis.NewScript(lua.Allocate), redis.NewScript(lua.Seed), redis.NewScript(lua.Lease), redis.NewScript(lua.Add),
	redis.NewScript(lua.Retire), redis.NewScript(lua.Peek), redis.NewScript(lua.Resolve), redis.NewScript(lua.Lock),
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
type Engine struct {
	rdb   RedisClient
	store Store
	opts  alloc.Options
	node  string // this node's token in lease locks

	memoSeq atomic.Uint64 // numbers this node's allocate calls; see memoKey

	pools alloc.Registry[*rpool]
	pipe  pipeline // the allocate calls of all pools, coalesced into round trips
	// Durable idempotency records are looked up and written in batches: a keyed
	// request costs the store a share of two round trips, not two of its own.
	lookup alloc.Combiner[store.IdempotencyRecord, store.IdempotencyRecord]
	idem   alloc.Combiner[store.IdempotencyRecord, store.IdempotencyRecord]
	unsure unsettled // allocate calls whose outcome is unknown, until settled
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

var _ numberd.Engine = (*Engine)(nil)

// rpool is what a node keeps of one pool: the requests waiting for an allocate
// call, the segments it has seen (to turn offsets into numbers), and its lease
// sizing.
type rpool struct {
	id     string
	digits int
	keys   poolKeys

	batchMu  sync.Mutex
	inFlight bool    // a request of p is making an allocate call
	queued   []*call // requests waiting for the next one
	batch    []*call // the batch of the call in flight, kept for the next
	spent    string  // the memo of the last call answered, for the next to delete

	segMu sync.RWMutex
	segs  map[int64]numberd.Segment

	leaseMu   sync.Mutex
	lease     alloc.Lease
	extension *alloc.Extension // this node's lease extension in flight, if any

	markMu  sync.Mutex
	mark    stateMark       // the newest state this node saw of p
	cursors map[int64]int64 // per segment, the most numbers this node saw used
	// Per segment, the numbers the store's checkpoint says were used, read at
	// seed generation ckGen or later: a floor of what any state of ckGen or a
	// later generation has used. Other nodes' checkpoints reach this node through
	// it, so that a state gone back in time is refused here too, although this
	// node never saw the newer one (see checkpoint).
	ckGen int64
	ckpt  map[int64]int64

	gen       atomic.Int64 // the newest seed generation seen in the store
	leased    atomic.Int64 // reserved, unissued numbers as of the last answer
	available atomic.Int64 // numbers left as of the last answer
	lastSync  atomic.Int64 // unix nanos of the last sync after an exhausted answer
	touchedAt atomic.Int64 // unix nanos of the last allocation, for checkpoints

	learnedAt atomic.Int64 // unix nanos of the last read of the store's floors
	// floorsAt is the Redis time (ms) read before the last read of the store's
	// floors that read them all: allocate.lua refuses floors older than
	// maxFloorAge by its own clock, however long this node paused meanwhile.
	floorsAt  atomic.Int64
	refreshMu sync.Mutex // one refresh of stale floors at a time
	triedAt   int64      // unix nanos of the last refresh tried, under refreshMu
	// triedFailed says the last refresh tried failed, under refreshMu.
	triedFailed bool
	stampedAt   atomic.Int64 // unix nanos when floorsAt was last raised
}

// stateMark orders the states of a pool: by seed generation, then by version.
type stateMark struct{ gen, ver int64 }

func (m stateMark) before(o stateMark) bool {
	return m.gen < o.gen || (m.gen == o.gen && m.ver < o.ver)
}

type poolKeys struct{ meta, seg, lock, memo, idem, unsettled string }

func keysOf(pool string) poolKeys {
	tag := "numberd:{" + pool + "}:"
	return poolKeys{meta: tag + "meta", seg: tag + "seg", lock: tag + "lock", memo: tag + "memo:", idem: tag + "idem:", unsettled: tag + "unsettled"}
}

// call is one allocation request waiting for its batch. Calls are reused: done
// carries one signal per use instead of being closed, so the hot path allocates
// neither a call nor a channel per request.
type call struct {
	ctx      context.Context
	deadline time.Time // when the request gives up: its allocate call with it
	count    int
	idem     *numberd.Idempotency
	fresh    bool // take new numbers for idem even if Redis holds some
	done     chan struct{}
	kind     string      // this request's letter of the allocate answer, or RESEED
	runs     []offsetRun // its numbers, for A and R
	why      string      // with RESEED: why the state cannot be used
	stale    int64       // with RESEED: the unusable state's generation, or -1
	dropped  bool        // with RESEED: the call took numbers for this request, which went to no one
	err      error
	lead     bool // answered with the lead: make the next call (see lead)
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// finish hands c its answer.
func (c *call) finish() { c.done <- struct{}{} }

// Open starts the distributed engine on rdb and st, loading the scripts
// into Redis.
func Open(ctx context.Context, rdb RedisClient, st *store.Store, opts alloc.Options) (*Engine, error) {
	if opts.CheckpointEvery <= 0 {
		// Other nodes learn from the checkpoint how far each pool went (see
		// rpool.ckpt): a state restored from older keys is refused once they have.
		opts.CheckpointEvery = time.Second
	}
	e := &Engine{rdb: rdb, store: st, opts: opts.WithDefaults(), node: randomToken(), stop: make(chan struct{})}
	e.lookup.Run = e.store.FindIdempotencies
	e.idem.Run = e.store.KeepIdempotencies
	e.unsure.wake = make(chan struct{}, 1)
	for _, s := range []*redis.Script{scripts.allocate, scripts.seed, scripts.lease, scripts.add, scripts.retire, scripts.peek, scripts.resolve, scripts.lock, scripts.unlock} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, redisErr(err)
		}
	}
	e.opts.Metrics.WatchPools(e.gauges)
	e.wg.Add(2)
	go e.janitor()
	go e.resolver()
	return e, nil
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

// pool returns the node's state of pool id, loading it from the store at first use.
func (e *Engine) pool(ctx context.Context, id string) (*rpool, error) {
	if p, ok := e.pools.Get(id); ok {
		return p, nil
	}
	cfg, err := e.store.Pool(ctx, id)
	if err != nil {
		return nil, err
	}
	// The store's checkpoint is the first floor of what went out: a node that
	// starts, or first serves the pool, has seen nothing of Redis's state yet.
	segs, err := e.store.Segments(ctx, id)
	if err != nil {
		return nil, err
	}
	return e.adopt(cfg, segs)
}

// adopt returns the node's state of pool cfg, making it from cfg and the pool's
// segments segs, read from the store, if the node has none yet.
func (e *Engine) adopt(cfg numberd.Pool, segs []numberd.Segment) (*rpool, error) {
	return e.pools.GetOrAdd(cfg.ID, func() (*rpool, error) {
		// Close looks at the pools after setting the flag: a pool added once it
		// is set would miss the final checkpoint.
		if e.closed.Load() {
			return nil, numberd.ErrClosed
		}
		p := &rpool{id: cfg.ID, digits: cfg.Digits, keys: keysOf(cfg.ID), segs: map[int64]numberd.Segment{}, cursors: map[int64]int64{}, ckpt: map[int64]int64{}, lease: alloc.NewLease(e.opts)}
		p.seen(cfg.Epoch)
		p.learn(segs...)
		return p, nil
	})
}

// Allocate hands out req.Count numbers of req.Pool, all or none; see
// Embedded.Allocate for the errors, plus ErrUnavailable when Redis fails.
func (e *Engine) Allocate(ctx context.Context, req numberd.Request) (numberd.Allocation, error) {
	start := e.opts.Now()
	a, err := e.allocate(ctx, req)
	alloc.Observe(e.opts.Metrics, req.Pool, a, err, e.opts.Now().Sub(start))
	return a, err
}

func (e *Engine) allocate(ctx context.Context, req numberd.Request) (a numberd.Allocation, err error) {
	if err := req.Validate(); err != nil {
		return numberd.Allocation{}, err
	}
	deadline := time.Now().Add(e.opts.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	p, ok := e.pools.Get(req.Pool)
	if !ok {
		// A pool this node has not served yet is read from the store: bounded too.
		first, cancel := context.WithDeadline(ctx, deadline)
		p, err = e.pool(first, req.Pool)
		cancel()
		if err != nil {
			return numberd.Allocation{}, err
		}
	}
	e.refreshFloors(ctx, p)
	// Off the fast path (waiting on locks, the store, Redis), ctx gets the
	// deadline; the fast path is bounded by the allocate call's own deadline and
	// spares the timer.
	slow, cancel := ctx, context.CancelFunc(func() {})
	defer func() { cancel() }()
	slowDown := func() {
		if slow == ctx {
			slow, cancel = context.WithDeadline(ctx, deadline)
		}
	}
	// fresh: the key's earlier numbers were abandoned, and a copy Redis may still
	// hold of them must not be replayed.
	fresh := false
	if req.Idempotency != nil {
		slowDown()
		// The store's record answers first: Redis may have lost its own.
		rec, err := e.stored(slow, p, req)
		switch {
		case err != nil:
			return numberd.Allocation{}, err
		case rec.Key != "" && rec.Fingerprint != req.Fingerprint():
			return e.recorded(p, req, rec) // the key's conflict, abandoned or not
		case rec.Abandoned() && rec.Key != "":
			fresh = true
		case rec.Key != "":
			return e.recorded(p, req, rec)
		}
	}
	synced := false
	for round := 0; ; round++ {
		if round == maxRounds {
			return numberd.Allocation{}, fmt.Errorf("%w: pool %s: its Redis state kept changing", numberd.ErrRedisUnavailable, p.id)
		}
		c := calls.Get().(*call)
		c.ctx, c.deadline, c.count, c.idem, c.fresh, c.kind, c.runs, c.err = slow, deadline, req.Count, req.Idempotency, fresh, "", nil, nil
		if err := e.submit(p, c); err != nil {
			return numberd.Allocation{}, err // c may still be queued: not reused
		}
		kind, runs, why, stale, dropped := c.kind, c.runs, c.why, c.stale, c.dropped
		c.ctx, c.idem, c.runs, c.dropped = nil, nil, nil, false
		calls.Put(c)
		switch kind {
		case "A", "R":
			a := numberd.Allocation{Pool: p.id, Replayed: kind == "R"}
			if a.Spans, err = e.spans(ctx, p, runs); err != nil {
				if kind == "R" {
					return numberd.Allocation{}, err // a replay took nothing
				}
				// Taken, but their segment cannot be read to name them: they are
				// not handed out, and the resolver abandons them once it can.
				e.unsure.add(unsettledCall{pool: p, reqs: []pendingRequest{{count: req.Count, idem: req.Idempotency}}, took: [][]offsetRun{runs}, read: true, since: time.Now()})
				return numberd.Allocation{}, fmt.Errorf("%w: %v", numberd.ErrOutcomeUnknown, err)
			}
			if req.Idempotency == nil {
				return a, nil
			}
			slowDown()
			a, err := e.keep(slow, p, req, a)
			if errors.Is(err, errTakeAfresh) {
				fresh = true
				continue
			}
			return a, err
		case "C":
			return numberd.Allocation{}, fmt.Errorf("%w: key %q was used with another count", numberd.ErrIdempotencyConflict, req.Idempotency.Key)
		case "X":
			if synced || !e.syncDue(p) {
				return numberd.Allocation{}, fmt.Errorf("%w: pool %s has fewer than %d numbers left", numberd.ErrExhausted, p.id, req.Count)
			}
			synced = true
			slowDown()
			// The store may hold a segment Redis lacks: one loaded while Redis was away.
			if err := e.extend(slow, p, int64(req.Count)); err != nil {
				return numberd.Allocation{}, err
			}
		case "L":
			slowDown()
			if err := e.extend(slow, p, int64(req.Count)); err != nil {
				return numberd.Allocation{}, err
			}
		case "STALE":
			slowDown()
			if err := e.readFloors(slow, p, true); err != nil {
				return numberd.Allocation{}, err
			}
		case "RESEED":
			slowDown()
			// Redis holds the key's record of numbers that went to no one.
			fresh = fresh || dropped
			if err := e.reseed(slow, p, why, stale); err != nil {
				return numberd.Allocation{}, err
			}
		default:
			return numberd.Allocation{}, fmt.Errorf("%w: unexpected answer %q", numberd.ErrRedisUnavailable, kind)
		}
	}
}

// syncDue reports whether an exhausted pool may look for segments the store has
// and Redis lacks; under a stream of requests to an empty pool it does so at most
// every 200 ms.
func (e *Engine) syncDue(p *rpool) bool {
	now := time.Now().UnixNano()
	last := p.lastSync.Load()
	return now-last >= int64(200*time.Millisecond) && p.lastSync.CompareAndSwap(last, now)
}

// submit has c answered by an allocate call and waits for the answer. With no
// call of p in flight, c's own goroutine makes one at once; otherwise c waits in
// p's queue for the next call, which the request that ends the current one hands
// to the first request queued (see lead). There is no committer goroutine: a lone
// request costs no hand-off to one and back, and under load the queue grows while
// a call is in flight, so a batch is sized by the load, not by a timer.
//
// The wait does not watch ctx: a call skips a request whose caller has left
// before it runs, and every call is bounded by redisTimeout, so the wait is
// bounded either way, and watching a request's context would make it allocate a
// channel.
func (e *Engine) submit(p *rpool, c *call) error {
	if e.closed.Load() {
		return numberd.ErrClosed
	}
	p.batchMu.Lock()
	if !p.inFlight {
		// Close waits for the calls in flight. Counted first, then the flag looked
		// at again: a Close that began before the count sees the flag set.
		e.wg.Add(1)
		if e.closed.Load() {
			p.batchMu.Unlock()
			e.wg.Done()
			return numberd.ErrClosed
		}
		p.inFlight = true
		p.batchMu.Unlock()
		e.lead(p, c)
		return c.err
	}
	p.queued = append(p.queued, c)
	p.batchMu.Unlock()
	select {
	case <-c.done:
	case <-e.stop:
		// Closing: the request that ends the call in flight answers every queued
		// one (ErrClosed, having taken nothing) instead of handing it the lead.
		select {
		case <-c.done:
		case <-time.After(2 * redisTimeout):
			return numberd.ErrClosed
		}
	}
	if c.lead {
		c.lead = false
		e.lead(p, c)
	}
	return c.err
}

// lead makes one allocate call for c and the requests queued behind it, up to
// maxBatch, and then hands the lead to the first request queued meanwhile, or
// ends p's run of calls if none is.
func (e *Engine) lead(p *rpool, c *call) {
	p.batchMu.Lock()
	n := min(len(p.queued), maxBatch-1)
	batch := append(append(p.batch[:0], c), p.queued[:n]...)
	p.queued = p.queued[:copy(p.queued, p.queued[n:])]
	p.batchMu.Unlock()

	defer func() {
		if v := recover(); v != nil {
			// A request's goroutine recovers its handler's panics, but one here
			// would leave p's requests waiting forever: end the process, as the
			// panic of a goroutine of its own would.
			go panic(v)
			select {}
		}
	}()
	e.run(p, batch, c)
	clear(batch)
	p.batch = batch

	p.batchMu.Lock()
	if len(p.queued) == 0 || e.closed.Load() {
		queued := p.queued
		p.queued, p.inFlight = nil, false
		p.batchMu.Unlock()
		for _, q := range queued {
			q.err = numberd.ErrClosed
			q.finish()
		}
		e.wg.Done()
		return
	}
	next := shift(&p.queued)
	p.batchMu.Unlock()
	next.lead = true
	next.finish()
}

// run makes one allocate call for batch and hands each request but self, whose
// goroutine makes the call, its answer.
func (e *Engine) run(p *rpool, batch []*call, self *call) {
	answer := func(c *call) {
		if c != self {
			c.finish()
		}
	}
	live := batch[:0]
	now := time.Now()
	for _, c := range batch {
		if c.ctx.Err() != nil {
			c.err = c.ctx.Err() // its caller left: take nothing for it
			answer(c)
			continue
		}
		if !now.Before(c.deadline) {
			c.err = fmt.Errorf("%w: %w", numberd.ErrRedisUnavailable, errNotSent)
			answer(c)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	p.touchedAt.Store(time.Now().UnixNano())
	deadline := live[0].deadline
	for _, c := range live[1:] {
		if c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	memo := e.memoKey(p)
	keys, args := allocateArgs(p, memo, live, e.maxFloorAge())
	if p.spent != "" {
		// Only the leader touches spent: one call of p is in flight at a time.
		keys = append(keys, p.spent) // after the idempotency keys: see allocate.lua
		p.spent = ""
	}
	reply, err := e.evalAllocate(keys, args, deadline)
	e.opts.Metrics.RedisCalls.WithLabelValues("allocate").Inc()
	if err == nil {
		// Answered: no retry of this call will come, nor a need to resolve it.
		p.spent = memo
	}
	if err != nil && outcomeUnknown(err) {
		// The call may run yet, or may have run and lost its answer: none of its
		// numbers goes to these requests, and the resolver settles what it took.
		e.unsure.add(unsettledCall{pool: p, memo: memo, reqs: requestsOf(live), since: time.Now()})
		err = fmt.Errorf("%w: %v", numberd.ErrOutcomeUnknown, err)
		for _, c := range live {
			c.err = err
		}
	} else if err := e.parseAllocate(p, reply, err, live); err != nil {
		for _, c := range live {
			c.err = err
		}
	}
	for _, c := range live {
		answer(c)
	}
}

// outcomeUnknown reports whether a failed allocate call may have run: anything
// but a call never sent (see exec), a connection never made, or an error Redis
// answered, which a script that ran does not give.
func outcomeUnknown(err error) bool {
	var dial *net.OpError
	var rerr redis.Error
	switch {
	case errors.Is(err, errNotSent), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return false
	case errors.As(err, &dial) && dial.Op == "dial":
		return false
	case errors.As(err, &rerr):
		return false
	}
	return true
}

// memoKey names a new allocate call of p: the node's token and a sequence number,
// unique across nodes without drawing randomness per call.
func (e *Engine) memoKey(p *rpool) string {
	return p.keys.memo + e.node + "-" + strconv.FormatUint(e.memoSeq.Add(1), 10)
}

// allocateArgs returns allocate.lua's keys and arguments for batch: the counts
// and key indexes go as two strings, not as arguments of each request.
func allocateArgs(p *rpool, memo string, batch []*call, maxAge time.Duration) (keys []string, args []any) {
	keys = []string{p.keys.meta, p.keys.seg, memo}
	floor := p.floor()
	args = []any{memoTTL, int(redisIdemTTL / time.Second), floor.gen, floor.ver, len(batch), 0, "-", "-", p.floorsAt.Load(), maxAge.Milliseconds()}
	var counts, kis []byte
	total := 0
	for i, c := range batch {
		if i > 0 {
			counts, kis = append(counts, ','), append(kis, ',')
		}
		counts = strconv.AppendInt(counts, int64(c.count), 10)
		total += c.count
		ki := 0
		if c.idem != nil {
			keys = append(keys, p.keys.idem+c.idem.Scope+":"+c.idem.Key)
			ki = len(keys) - 3
			args = append(args, numberd.Request{Count: c.count}.Fingerprint())
			if c.fresh {
				ki = -ki
			}
		}
		kis = strconv.AppendInt(kis, int64(ki), 10)
	}
	args[5] = total
	if len(batch) > 0 {
		args[6] = string(counts)
	}
	if len(keys) > 3 {
		args[7] = string(kis)
	}
	return keys, args
}

// offsetRun is numbers of a segment by offset from its first: from..to.
type offsetRun struct {
	seg      int64
	from, to int64
}

// parseAllocate hands each request its part of allocate's answer, recording what
// the answer reports on the way. The A requests take their numbers in turn from
// the runs the call handed out.
func (e *Engine) parseAllocate(p *rpool, reply string, err error, calls []*call) error {
	if err != nil {
		return redisErr(err)
	}
	f := strings.Fields(reply)
	if len(f) == 1 && f[0] == "STALE" {
		for _, c := range calls {
			c.kind = "STALE"
		}
		return nil
	}
	if len(f) == 3 && f[0] == "RESEED" {
		stale, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			stale = -1
		}
		for _, c := range calls {
			c.kind, c.why, c.stale = "RESEED", f[1], stale
		}
		return nil
	}
	n := len(calls)
	if len(f) < 8 || f[0] != "OK" || f[5] != strconv.Itoa(n) || len(f[6]) != n {
		return fmt.Errorf("%w: malformed allocate answer %q", numberd.ErrRedisUnavailable, reply)
	}
	var nums [4]int64 // gen, ver, available, leased
	for i := range nums {
		if nums[i], err = strconv.ParseInt(f[1+i], 10, 64); err != nil {
			return fmt.Errorf("%w: malformed allocate answer %q", numberd.ErrRedisUnavailable, reply)
		}
	}
	gen, ver, available, leased := nums[0], nums[1], nums[2], nums[3]
	runs, err := parseRuns(f[7])
	if err != nil {
		return err
	}
	tail, used, err := usedTokens(f[8:])
	if err != nil {
		return err
	}
	from := p.startsBelow(gen, runs)
	if from == nil {
		from = p.usedBelow(gen, used)
	}
	if from != nil {
		e.drop(p, gen, runs, from, calls, f[6])
		return nil
	}
	p.saw(stateMark{gen, ver}, runs)
	replays := tail
	for i, c := range calls {
		c.kind = f[6][i : i+1]
		switch c.kind {
		case "A":
			if c.runs, runs, err = take(runs, int64(c.count)); err != nil {
				return err
			}
		case "R":
			if len(replays) == 0 || !strings.HasPrefix(replays[0], "R:") {
				return fmt.Errorf("%w: allocate answer %q lacks a replay", numberd.ErrRedisUnavailable, reply)
			}
			if c.runs, err = parseRuns(replays[0][2:]); err != nil {
				return err
			}
			replays = replays[1:]
		}
	}
	p.available.Store(available)
	p.leased.Store(leased)
	e.opts.Observe(p.id, available)
	for _, ev := range replays {
		id, used, ok := parseEvent(ev, "E:")
		if !ok {
			return fmt.Errorf("%w: malformed event %q in allocate answer", numberd.ErrRedisUnavailable, ev)
		}
		e.goClose(p, gen, id, used, numberd.SegmentExpired, numberd.GapExpired)
	}
	if leased < p.leaseSize()/2 {
		e.extendAsync(p)
	}
	return nil
}

// usedTokens splits the U:<id>:<used> tokens, which come last, off an allocate
// answer's trailing tokens.
func usedTokens(tokens []string) (rest []string, used map[int64]int64, err error) {
	rest = tokens
	for len(rest) > 0 && strings.HasPrefix(rest[len(rest)-1], "U:") {
		id, n, ok := parseEvent(rest[len(rest)-1], "U:")
		if !ok {
			return nil, nil, fmt.Errorf("%w: malformed used count %q in allocate answer", numberd.ErrRedisUnavailable, rest[len(rest)-1])
		}
		if used == nil {
			used = map[int64]int64{}
		}
		used[id] = n
		rest = rest[:len(rest)-1]
	}
	return rest, used, nil
}

// parseRuns parses "<id>:<from>-<to>,…", or "-" for none.
func parseRuns(text string) ([]offsetRun, error) {
	if text == "-" {
		return nil, nil
	}
	var out []offsetRun
	for part := range strings.SplitSeq(text, ",") {
		ids, bounds, ok1 := strings.Cut(part, ":")
		from, to, ok2 := strings.Cut(bounds, "-")
		id, err1 := strconv.ParseInt(ids, 10, 64)
		lo, err2 := strconv.ParseInt(from, 10, 64)
		hi, err3 := strconv.ParseInt(to, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || lo > hi {
			return nil, fmt.Errorf("%w: malformed runs %q", numberd.ErrRedisUnavailable, text)
		}
		out = append(out, offsetRun{seg: id, from: lo, to: hi})
	}
	return out, nil
}

// take cuts the first count numbers off runs.
func take(runs []offsetRun, count int64) (got, rest []offsetRun, err error) {
	for count > 0 {
		if len(runs) == 0 {
			return nil, nil, fmt.Errorf("%w: allocate answer holds fewer numbers than it allocated", numberd.ErrRedisUnavailable)
		}
		r := runs[0]
		n := min(count, r.to-r.from+1)
		got = append(got, offsetRun{seg: r.seg, from: r.from, to: r.from + n - 1})
		count -= n
		if r.from+n > r.to {
			runs = runs[1:]
		} else {
			runs[0].from += n
		}
	}
	return got, runs, nil
}

// parseEvent parses "<prefix><id>:<used>".
func parseEvent(ev, prefix string) (id, used int64, ok bool) {
	rest, found := strings.CutPrefix(ev, prefix)
	a, b, cut := strings.Cut(rest, ":")
	if !found || !cut {
		return 0, 0, false
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	used, err2 := strconv.ParseInt(b, 10, 64)
	return id, used, err1 == nil && err2 == nil
}

// spans turns runs of offsets into number ranges.
func (e *Engine) spans(ctx context.Context, p *rpool, runs []offsetRun) ([]segment.Range, error) {
	out := make([]segment.Range, 0, len(runs))
	for _, run := range runs {
		seg, err := e.segment(ctx, p, run.seg)
		if err != nil {
			return nil, err
		}
		r := seg.Range
		r.Lo, r.Hi = seg.Range.Lo+run.from, seg.Range.Lo+run.to
		if r.Hi > seg.Range.Hi {
			return nil, fmt.Errorf("%w: offsets %d..%d beyond segment %d", numberd.ErrRedisUnavailable, run.from, run.to, run.seg)
		}
		out = append(out, r)
	}
	return out, nil
}

// segment returns segment id of p from the node's cache, reading the store for one
// it has not seen.
func (e *Engine) segment(ctx context.Context, p *rpool, id int64) (numberd.Segment, error) {
	p.segMu.RLock()
	seg, ok := p.segs[id]
	p.segMu.RUnlock()
	if ok {
		return seg, nil
	}
	seg, err := e.store.Segment(ctx, p.id, id)
	if err != nil {
		return numberd.Segment{}, err
	}
	p.remember(seg)
	return seg, nil
}

func (p *rpool) remember(segs ...numberd.Segment) {
	p.segMu.Lock()
	for _, s := range segs {
		p.segs[s.ID] = s
	}
	p.segMu.Unlock()
}

// seen records that the store is at seed generation gen, or later.
func (p *rpool) seen(gen int64) {
	for {
		cur := p.gen.Load()
		if gen <= cur || p.gen.CompareAndSwap(cur, gen) {
			return
		}
	}
}

func (p *rpool) leaseSize() int64 {
	p.leaseMu.Lock()
	defer p.leaseMu.Unlock()
	return p.lease.Size
}

// Close stops the engine. Pools' Redis state stays: another node, or this one
// restarted, goes on from it without a gap.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return e.checkpoint(ctx)
}
