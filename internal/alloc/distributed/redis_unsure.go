package distributed

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// maxUnsettled bounds what a node remembers of calls to settle. Past it, during
// a long outage, the oldest are forgotten, with an error logged: their numbers,
// if they took any, fall to the next reseed's recovery gap or stay unaccounted.
const maxUnsettled = 1 << 16

// unsettledCall is an allocate call whose answer never came back, or a keyed
// allocation whose idempotency record could not be stored; or numbers known
// abandoned, or recovery gaps known too wide, that the store is yet to be told of.
type unsettledCall struct {
	pool *rpool
	// id names the call's entry in its pool's hash of unsettled work (see
	// redis_orphans.go), once registered.
	id         string
	registered bool
	inStore    bool             // registered in the store, Redis being away
	memo       string           // the call's id, whose memo tells what it took, when it is a call
	reqs       []pendingRequest // the call's requests, in its order
	// took is what each of reqs took (nil: nothing), once read is set: from the
	// memo, read once so that the memo may expire while the store is away, or
	// known already when numbers were taken but could not be named.
	took   [][]offsetRun
	read   bool
	record *store.IdempotencyRecord
	lost   []segment.Range // numbers known skipped, whose gap is yet to be recorded
	// lostAs is lost's gap reason: abandoned unless set (recovery for numbers
	// of a state gone back in time, which others may have handed out before).
	lostAs string
	// forget holds abandoned records to offer the store for keys whose numbers
	// Redis keeps but no one may be answered (an answer refused as gone back).
	forget []store.IdempotencyRecord
	trims  []store.Trim // recovery gaps a reseed recorded wide, yet to be narrowed
	// seeded is a reseed whose seed.lua reply was lost, its gaps yet to be
	// narrowed by the report the seeded state keeps.
	seeded *lostSeed
	since  time.Time
}

type pendingRequest struct {
	count int
	idem  *numberd.Idempotency
}

func requestsOf(batch []*call) []pendingRequest {
	out := make([]pendingRequest, len(batch))
	for i, c := range batch {
		out[i] = pendingRequest{count: c.count, idem: c.idem}
	}
	return out
}

// resolver settles the calls whose outcome is unknown, and what else the store
// is yet to be told (see unsettledCall), and the entries other nodes left.
type resolver struct {
	rdb     RedisClient
	store   stores
	opts    *alloc.Options
	life    *life
	names   *namer
	pipe    *pipeline
	pools   *catalog
	records *recorder
	unsure  *unsettled
}

// unsettled holds what the resolver has yet to settle.
type unsettled struct {
	mu    sync.Mutex
	calls []unsettledCall
	lost  int // forgotten past maxUnsettled, not logged yet
	wake  chan struct{}
}

func (u *unsettled) add(c unsettledCall) {
	u.keep(c)
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// keep holds c for the resolver's next pass without waking it: for a call it
// failed to settle just now.
func (u *unsettled) keep(c unsettledCall) {
	u.mu.Lock()
	if len(u.calls) == maxUnsettled {
		u.calls = u.calls[1:]
		u.lost++
	}
	u.calls = append(u.calls, c)
	u.mu.Unlock()
}

// holds reports whether the call id is among those to settle.
func (u *unsettled) holds(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.calls {
		if c.memo == id {
			return true
		}
	}
	return false
}

func (u *unsettled) take() (calls []unsettledCall, lost int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	calls, lost = u.calls, u.lost
	u.calls, u.lost = nil, 0
	return calls, lost
}

// resolver settles unsettled calls as soon as Redis and the store answer again,
// retrying every second until then, and once more at Close.
func (res *resolver) run() {
	defer res.life.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-res.life.stop:
			ctx, cancel := context.WithTimeout(context.Background(), res.opts.StoreTimeout)
			res.settleAll(ctx)
			cancel()
			if left, _ := res.unsure.take(); len(left) > 0 {
				res.opts.Logger.Error("allocate calls left unsettled at close: another node settles those registered in Redis", "calls", len(left))
			}
			return
		case <-res.unsure.wake:
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), res.opts.StoreTimeout)
		res.settleAll(ctx)
		cancel()
		if time.Since(lastSweep) >= orphanSweepEvery {
			lastSweep = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), res.opts.StoreTimeout)
			res.sweepOrphans(ctx)
			cancel()
		}
	}
}

// settleAll settles what it can of the unsettled calls, keeps the rest for the
// next pass, and logs one line for the pass.
func (res *resolver) settleAll(ctx context.Context) {
	calls, lost := res.unsure.take()
	if lost > 0 {
		res.opts.Logger.Error("forgot allocate calls to settle: too many while Redis or the store was away", "calls", lost)
	}
	if len(calls) == 0 {
		return
	}
	var settled int
	var abandoned, kept int64
	var failed error
	for i, c := range calls {
		if failed != nil {
			res.unsure.keep(c)
			continue
		}
		a, k, err := res.settleOwn(ctx, &calls[i])
		if err != nil {
			failed = err
			res.unsure.keep(calls[i])
			continue
		}
		settled++
		abandoned += a
		kept += k
	}
	if settled > 0 {
		res.opts.Logger.Warn("settled allocations whose answers were lost", "calls", settled, "abandoned_numbers", abandoned, "answered_to_retries", kept, "unsettled", len(calls)-settled)
	}
	if failed != nil && settled == 0 {
		res.opts.Logger.Debug("settling lost allocations waits for Redis and the store", "calls", len(calls), "err", failed)
	}
}

// settleOwn settles one of this node's calls, registered first so that another
// node finishes it should this one die, and unregistered once settled.
func (res *resolver) settleOwn(ctx context.Context, c *unsettledCall) (abandoned, kept int64, err error) {
	// A failed registration does not hold the settling up: what needs only the
	// store is settled all the same, and the rest is registered on a later pass.
	// A lost seed's gaps are not registered: should this node die, they stay as
	// wide as recorded, never too narrow, as a crash during the reseed leaves them.
	var regErr error
	if !c.registered && c.seeded == nil {
		regErr = res.register(ctx, c)
	}
	if abandoned, kept, err = res.settle(ctx, c); err != nil {
		return 0, 0, errors.Join(err, regErr)
	}
	return abandoned, kept, res.unregister(ctx, c)
}

// settle settles one call: what it took goes into an abandoned gap, but for the
// numbers of a key that a retry was answered with before: those stay the key's.
// It returns how many numbers went each way.
func (res *resolver) settle(ctx context.Context, c *unsettledCall) (abandoned, kept int64, err error) {
	p := c.pool
	if c.seeded != nil {
		return 0, 0, res.settleSeed(ctx, p, c.seeded)
	}
	if c.trims != nil {
		return 0, 0, res.store.gens.TrimRecovery(ctx, p.id, c.trims)
	}
	if c.lost != nil {
		reason := c.lostAs
		if reason == "" {
			reason = numberd.GapAbandoned
		}
		n, err := res.records.skip(ctx, p, c.lost, reason)
		return n, 0, err
	}
	if c.forget != nil {
		_, err := res.store.records.Keep(ctx, c.forget)
		return 0, 0, err
	}
	if c.record != nil {
		held, err := res.records.idem.Do(ctx, abandonedRecord(*c.record))
		if err != nil {
			return 0, 0, err
		}
		spans, err := alloc.DecodeSpans(c.record.Answer, p.digits)
		if err != nil {
			return 0, 0, err
		}
		if held.Answer != c.record.Answer {
			n, err := res.records.abandon(ctx, p, spans)
			return n, 0, err
		}
		return 0, numberd.Allocation{Spans: spans}.Count(), nil
	}
	if !c.read {
		if err := res.readMemo(ctx, c); err != nil {
			return 0, 0, err
		}
	}
	var lost []offsetRun
	var recs []store.IdempotencyRecord
	for i, r := range c.reqs {
		got := c.took[i]
		if got == nil {
			continue
		}
		if r.idem == nil {
			lost = append(lost, got...)
			continue
		}
		// A keyed request's numbers are abandoned like any other, unless a retry
		// was answered them meanwhile (Redis replays them to one): the store
		// holds its record then, and the abandoned record offered here stays out.
		spans, err := res.pools.spans(ctx, p, got)
		if err != nil {
			return 0, 0, err
		}
		recs = append(recs, res.records.record(p, numberd.Request{Pool: p.id, Count: r.count, Idempotency: r.idem}, spans))
	}
	offers := make([]store.IdempotencyRecord, len(recs))
	for i, rec := range recs {
		offers[i] = abandonedRecord(rec)
	}
	var held []store.IdempotencyRecord
	if len(recs) > 0 {
		if held, err = res.store.records.Keep(ctx, offers); err != nil {
			return 0, 0, err
		}
	}
	spans, err := res.pools.spans(ctx, p, lost)
	if err != nil {
		return 0, 0, err
	}
	for i, rec := range recs {
		mine, err := alloc.DecodeSpans(rec.Answer, p.digits)
		if err != nil {
			return 0, 0, err
		}
		if held[i].Answer == rec.Answer {
			kept += numberd.Allocation{Spans: mine}.Count()
		} else {
			spans = append(spans, mine...)
		}
	}
	if abandoned, err = res.records.abandon(ctx, p, spans); err != nil {
		return 0, 0, err
	}
	return abandoned, kept, res.closeMemo(ctx, p, c.memo)
}

// readMemo reads what c's call took from its memo into c.took, or learns that
// it never ran and now never will (resolve.lua leaves a tombstone in its place).
func (res *resolver) readMemo(ctx context.Context, c *unsettledCall) error {
	reply, err := scripts.resolve.Run(ctx, res.rdb, []string{c.pool.keys.seg}, c.memo, "read").Text()
	res.opts.Metrics.RedisCalls.WithLabelValues("resolve").Inc()
	if err != nil {
		return redisErr(err)
	}
	c.took = make([][]offsetRun, len(c.reqs))
	rr, err := parseResolveReply(reply, len(c.reqs))
	if err != nil {
		return err
	}
	if rr.void {
		// It never ran, and now never will; or the pool's state was lost, memo
		// and all, and the reseed's recovery gap holds what it took, as the
		// checkpoint records what every memo in place held (see peek.lua).
		c.read = true
		return nil
	}
	runs := rr.memo.runs
	for i, r := range c.reqs {
		if rr.memo.letters[i:i+1] != letterAllocated {
			continue
		}
		if c.took[i], runs, err = take(runs, int64(r.count)); err != nil {
			return err
		}
	}
	c.read = true
	return nil
}

// settleSeed narrows a lost seed's gaps by the report of the state that replaced
// the one the reseed read: the seed's own, or a later reseed's if the seed never
// ran. Both keep it in the state they wrote. Until the old state is replaced it
// waits; if the report is of another state, or the pool's state was lost, the
// gaps stay as wide as recorded, never too narrow.
func (res *resolver) settleSeed(ctx context.Context, p *rpool, s *lostSeed) error {
	f, err := res.rdb.HMGet(ctx, p.keys.meta, "run", "gen", "replaced").Result()
	if err != nil {
		return redisErr(err)
	}
	run, _ := f[0].(string)
	genText, _ := f[1].(string)
	replaced, _ := f[2].(string)
	gen, err := strconv.ParseInt(genText, 10, 64)
	switch {
	case err != nil || replaced == "":
		return nil
	case gen < s.gen:
		return errSeedPending
	}
	// The state keeps seed.lua's report: read back, it is the reply the seed had.
	reply, err := parseSeedReply(run + " " + replaced)
	if err != nil {
		res.opts.Logger.Warn("a lost seed's report unread; its recovery gaps stay as wide as recorded", "pool", p.id, "err", err)
		return nil
	}
	if _, ts := trimsOf(reply.replaced, s.view, s.segs, s.gaps, s.seen); len(ts) > 0 {
		return res.store.gens.TrimRecovery(ctx, p.id, ts)
	}
	return nil
}
