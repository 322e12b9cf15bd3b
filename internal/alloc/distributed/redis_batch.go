package distributed

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// batcher makes the allocate calls of each pool: the requests queued for a pool
// go in one call (see submit), whose answer it hands out among them, checked
// against what the node knows went out already.
type batcher struct {
	opts    *alloc.Options
	life    *life
	names   *namer
	pipe    *pipeline
	pools   *catalog
	floors  *floorReader
	leases  *leaser
	records *recorder
	admin   *admin
	unsure  *unsettled
}

// syncDue reports whether an exhausted pool may look for segments the store has
// and Redis lacks; under a stream of requests to an empty pool it does so at most
// every 200 ms.
func (b *batcher) syncDue(p *rpool) bool {
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
func (b *batcher) submit(p *rpool, c *call) error {
	if b.life.closed.Load() {
		return numberd.ErrClosed
	}
	p.batchMu.Lock()
	if !p.inFlight {
		// Close waits for the calls in flight. Counted first, then the flag looked
		// at again: a Close that began before the count sees the flag set.
		b.life.wg.Add(1)
		if b.life.closed.Load() {
			p.batchMu.Unlock()
			b.life.wg.Done()
			return numberd.ErrClosed
		}
		p.inFlight = true
		p.batchMu.Unlock()
		b.lead(p, c)
		return c.err
	}
	p.queued = append(p.queued, c)
	p.batchMu.Unlock()
	select {
	case <-c.done:
	case <-b.life.stop:
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
		b.lead(p, c)
	}
	return c.err
}

// lead makes one allocate call for c and the requests queued behind it, up to
// maxBatch, and then hands the lead to the first request queued meanwhile, or
// ends p's run of calls if none is.
func (b *batcher) lead(p *rpool, c *call) {
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
	b.run(p, batch, c)
	clear(batch)
	p.batch = batch

	p.batchMu.Lock()
	if len(p.queued) == 0 || b.life.closed.Load() {
		queued := p.queued
		p.queued, p.inFlight = nil, false
		p.batchMu.Unlock()
		for _, q := range queued {
			q.err = numberd.ErrClosed
			q.finish()
		}
		b.life.wg.Done()
		return
	}
	next := shift(&p.queued)
	p.batchMu.Unlock()
	next.lead = true
	next.finish()
}

// run makes one allocate call for batch and hands each request but self, whose
// goroutine makes the call, its answer.
func (b *batcher) run(p *rpool, batch []*call, self *call) {
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
	id := b.names.callID()
	keys, args := allocateArgs(p, id, live, b.floors.maxFloorAge())
	spent := p.spent.take()
	for _, s := range spent {
		args = append(args, s) // after the fingerprints: see allocate.lua
	}
	reply, err := b.pipe.evalAllocate(keys, args, deadline)
	b.opts.Metrics.RedisCalls.WithLabelValues("allocate").Inc()
	if err == nil {
		// Answered: no retry of this call will come, nor a need to resolve it.
		p.spent.add(id)
	} else {
		p.spent.add(spent...) // deleted or not: the next call deletes them again
	}
	if err != nil && outcomeUnknown(err) {
		// The call may run yet, or may have run and lost its answer: none of its
		// numbers goes to these requests, and the resolver settles what it took.
		b.unsure.add(unsettledCall{pool: p, memo: id, reqs: requestsOf(live), since: time.Now()})
		err = fmt.Errorf("%w: %v", numberd.ErrOutcomeUnknown, err)
		for _, c := range live {
			c.err = err
		}
	} else if err := b.handOut(p, reply, err, live); err != nil {
		for _, c := range live {
			c.err = err
		}
	}
	for _, c := range live {
		answer(c)
	}
}

// allocateArgs returns allocate.lua's keys and arguments for batch: the counts
// and key indexes go as two strings, not as arguments of each request.
func allocateArgs(p *rpool, id string, batch []*call, maxAge time.Duration) (keys []string, args []any) {
	keys = []string{p.keys.meta, p.keys.seg}
	floor := p.floor()
	args = []any{id, int(redisIdemTTL / time.Second), floor.gen, floor.ver, len(batch), 0, "-", "-", p.floorsAt.Load(), maxAge.Milliseconds()}
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
			ki = len(keys) - 2
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
	if len(keys) > 2 {
		args[7] = string(kis)
	}
	return keys, args
}

// handOut hands each request its part of allocate's answer, recording what
// the answer reports on the way. The A requests take their numbers in turn from
// the runs the call handed out.
func (b *batcher) handOut(p *rpool, text string, err error, calls []*call) error {
	if err != nil {
		return redisErr(err)
	}
	reply, err := parseAllocateReply(text, len(calls))
	if err != nil {
		return err
	}
	switch reply.code {
	case replyStale:
		for _, c := range calls {
			c.kind = replyStale
		}
		return nil
	case replyReseed:
		for _, c := range calls {
			c.kind, c.why, c.stale = replyReseed, reply.why, reply.stale
		}
		return nil
	}
	gen, runs := reply.gen, reply.runs
	from := p.startsBelow(gen, runs)
	if from == nil {
		from = p.usedBelow(gen, reply.used)
	}
	if from != nil {
		b.drop(p, gen, runs, from, calls, reply.letters)
		return nil
	}
	p.saw(stateMark{gen, reply.ver}, runs)
	replays := reply.replays
	for i, c := range calls {
		c.kind = reply.letters[i : i+1]
		switch c.kind {
		case letterAllocated:
			if c.runs, runs, err = take(runs, int64(c.count)); err != nil {
				return err
			}
		case letterReplayed:
			c.runs, replays = replays[0], replays[1:]
		}
	}
	p.available.Store(reply.available)
	p.leased.Store(reply.leased)
	b.opts.Observe(p.id, reply.available)
	for _, ev := range reply.expired {
		b.admin.goClose(p, gen, ev.seg, ev.used, numberd.SegmentExpired, numberd.GapExpired)
	}
	if reply.leased < p.leaseSize()/2 {
		b.leases.extendAsync(p)
	}
	return nil
}

// drop refuses an answer that handed out runs of a state gone back in time,
// starting below floors (see startsBelow): none of its numbers reaches a caller,
// and its requests meet a reseed. What the runs hold at or above the floors may
// have been handed out before the state went back, by nodes whose answers this
// one never saw, or never: the resolver records it as a recovery gap, which the
// reseed's own, from the store's checkpoint, would miss if a checkpoint of this
// very state moved the store's cursor past it first.
func (b *batcher) drop(p *rpool, gen int64, runs []offsetRun, floors map[int64]int64, calls []*call, letters string) {
	var lost []offsetRun
	for _, r := range runs {
		if f, ok := floors[r.seg]; ok {
			r.from = max(r.from, f)
		}
		if r.from <= r.to {
			lost = append(lost, r)
		}
	}
	if len(lost) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.StoreTimeout)
		spans, err := b.pools.spans(ctx, p, lost)
		cancel()
		if err != nil {
			b.opts.Logger.Error("numbers of a refused answer are not recorded as a gap", "pool", p.id, "err", err)
		} else {
			b.unsure.add(unsettledCall{pool: p, lost: spans, lostAs: numberd.GapRecovery, since: time.Now()})
		}
	}
	// Redis keeps the keys of the requests that took numbers, or replayed them,
	// of the state gone back as answered with them: the store's abandoned record
	// makes a later retry take new ones.
	var forget []store.IdempotencyRecord
	for i, c := range calls {
		c.kind, c.why, c.stale, c.dropped = replyReseed, "behind", gen, true
		if l := letters[i : i+1]; c.idem != nil && (l == letterAllocated || l == letterReplayed) {
			forget = append(forget, abandonedRecord(b.records.record(p, numberd.Request{Pool: p.id, Count: c.count, Idempotency: c.idem}, nil)))
		}
	}
	if len(forget) > 0 {
		b.unsure.add(unsettledCall{pool: p, forget: forget, since: time.Now()})
	}
}
