package distributed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/redis/go-redis/v9"
)

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
	p, ok := e.pools.known.Get(req.Pool)
	if !ok {
		// A pool this node has not served yet is read from the store: bounded too.
		first, cancel := context.WithDeadline(ctx, deadline)
		p, err = e.pools.pool(first, req.Pool)
		cancel()
		if err != nil {
			return numberd.Allocation{}, err
		}
	}
	e.floors.refreshFloors(ctx, p)
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
		rec, err := e.records.stored(slow, p, req)
		switch {
		case err != nil:
			return numberd.Allocation{}, err
		case rec.Key != "" && rec.Fingerprint != req.Fingerprint():
			return e.records.recorded(p, req, rec) // the key's conflict, abandoned or not
		case rec.Abandoned() && rec.Key != "":
			fresh = true
		case rec.Key != "":
			return e.records.recorded(p, req, rec)
		}
	}
	synced := false
	for round := 0; ; round++ {
		if round == maxRounds {
			return numberd.Allocation{}, fmt.Errorf("%w: pool %s: its Redis state kept changing", numberd.ErrRedisUnavailable, p.id)
		}
		c := calls.Get().(*call)
		c.ctx, c.deadline, c.count, c.idem, c.fresh, c.kind, c.runs, c.err = slow, deadline, req.Count, req.Idempotency, fresh, "", nil, nil
		if err := e.batches.submit(p, c); err != nil {
			return numberd.Allocation{}, err // c may still be queued: not reused
		}
		kind, runs, why, stale, dropped := c.kind, c.runs, c.why, c.stale, c.dropped
		c.ctx, c.idem, c.runs, c.dropped = nil, nil, nil, false
		calls.Put(c)
		switch kind {
		case letterAllocated, letterReplayed:
			a := numberd.Allocation{Pool: p.id, Replayed: kind == letterReplayed}
			if a.Spans, err = e.pools.spans(ctx, p, runs); err != nil {
				if kind == letterReplayed {
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
			a, err := e.records.keep(slow, p, req, a)
			if errors.Is(err, errTakeAfresh) {
				fresh = true
				continue
			}
			return a, err
		case letterConflict:
			return numberd.Allocation{}, fmt.Errorf("%w: key %q was used with another count", numberd.ErrIdempotencyConflict, req.Idempotency.Key)
		case letterExhausted:
			if synced || !e.batches.syncDue(p) {
				return numberd.Allocation{}, fmt.Errorf("%w: pool %s has fewer than %d numbers left", numberd.ErrExhausted, p.id, req.Count)
			}
			synced = true
			slowDown()
			// The store may hold a segment Redis lacks: one loaded while Redis was away.
			if err := e.leases.extend(slow, p, int64(req.Count)); err != nil {
				return numberd.Allocation{}, err
			}
		case letterUnleased:
			slowDown()
			if err := e.leases.extend(slow, p, int64(req.Count)); err != nil {
				return numberd.Allocation{}, err
			}
		case replyStale:
			slowDown()
			if err := e.floors.readFloors(slow, p, true); err != nil {
				return numberd.Allocation{}, err
			}
		case replyReseed:
			slowDown()
			// Redis holds the key's record of numbers that went to no one.
			fresh = fresh || dropped
			if err := e.leases.reseed(slow, p, why, stale); err != nil {
				return numberd.Allocation{}, err
			}
		default:
			return numberd.Allocation{}, fmt.Errorf("%w: unexpected answer %q", numberd.ErrRedisUnavailable, kind)
		}
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
