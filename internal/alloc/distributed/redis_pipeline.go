package distributed

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/numberd/numberd/internal/alloc"
	"github.com/redis/go-redis/v9"
)

// maxPipeline bounds the allocate calls one round trip carries.
const maxPipeline = 256

// errNotSent answers a call whose deadline passed before its round trip left:
// unlike a call that timed out in flight, it ran nothing.
var errNotSent = errors.New("alloc: the allocate call's deadline passed before it was sent")

// pipeline coalesces the allocate calls of a node's pools into round trips the
// way a pool's queue coalesces its requests into one call. Each pool has at most
// one call in flight, so with many pools a call carries few requests, and the
// round trip (two system calls and a wake-up on each side) cost more than the
// script: 50 pools took three times the CPU a request of one pool did. A pool's
// call that finds a round trip in flight waits for the next one, which the
// goroutine ending the current one hands to the first call queued.
//
// A call is bounded by its requests' deadline, its wait for a round trip
// included, as a call of its own was: a call whose time is up before its round
// trip leaves is answered errNotSent, having run nothing, and a round trip lasts
// until the first deadline of the calls it carries. The
// price of sharing: in a Redis Cluster, the calls of pools on a healthy shard
// wait with those of a failing one, up to that bound.
type pipeline struct {
	rdb  RedisClient
	opts *alloc.Options

	mu       sync.Mutex
	inFlight bool
	queued   []*evalCall
}

// evalCall is one allocate call waiting for its round trip.
type evalCall struct {
	keys     []string
	args     []any
	deadline time.Time
	reply    string
	err      error
	done     chan struct{} // one signal: answered, or lead
	lead     bool          // make the next round trip (see evalAllocate)
}

var evalCalls = sync.Pool{New: func() any { return &evalCall{done: make(chan struct{}, 1)} }}

// evalAllocate runs allocate.lua with keys and args in the next round trip that
// leaves before deadline.
func (q *pipeline) evalAllocate(keys []string, args []any, deadline time.Time) (string, error) {
	c := evalCalls.Get().(*evalCall)
	c.keys, c.args, c.deadline = keys, args, deadline
	q.mu.Lock()
	if q.inFlight {
		q.queued = append(q.queued, c)
		q.mu.Unlock()
		<-c.done
	} else {
		q.inFlight = true
		q.mu.Unlock()
		c.lead = true
	}
	if c.lead {
		c.lead = false
		q.roundTrip(c)
	}
	reply, err := c.reply, c.err
	*c = evalCall{done: c.done}
	evalCalls.Put(c)
	return reply, err
}

// roundTrip sends self and the calls queued behind it, up to maxPipeline, and
// then hands the next round trip to the first call queued meanwhile, if any.
func (q *pipeline) roundTrip(self *evalCall) {
	q.mu.Lock()
	n := min(len(q.queued), maxPipeline-1)
	batch := append(append(make([]*evalCall, 0, n+1), self), q.queued[:n]...)
	q.queued = q.queued[:copy(q.queued, q.queued[n:])]
	q.mu.Unlock()

	q.exec(batch)
	for _, c := range batch[1:] {
		c.done <- struct{}{}
	}

	q.mu.Lock()
	if len(q.queued) == 0 {
		q.inFlight = false
		q.mu.Unlock()
		return
	}
	next := shift(&q.queued)
	q.mu.Unlock()
	next.lead = true
	next.done <- struct{}{}
}

// shift takes the first of q's elements off, keeping q's array for reuse.
func shift[T any](q *[]T) T {
	first := (*q)[0]
	*q = (*q)[:copy(*q, (*q)[1:])]
	return first
}

// exec makes batch's calls in one round trip (see evalAll), until the first of
// their deadlines.
func (q *pipeline) exec(batch []*evalCall) {
	now := time.Now()
	live := make([]*evalCall, 0, len(batch))
	deadline := now.Add(redisTimeout)
	for _, c := range batch {
		if !now.Before(c.deadline) {
			c.err = errNotSent
			continue
		}
		live = append(live, c)
		if c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	batch = live
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	q.opts.Metrics.RedisRoundTrips.Inc()
	defer func(sent time.Time) { q.opts.Metrics.RedisRoundTripSeconds.Observe(time.Since(sent).Seconds()) }(time.Now())
	if len(batch) == 1 {
		c := batch[0]
		c.reply, c.err = scripts.allocate.Run(ctx, q.rdb, c.keys, c.args...).Text()
		return
	}
	calls := make([]scriptCall, len(batch))
	for i, c := range batch {
		calls[i] = scriptCall{keys: c.keys, args: c.args}
	}
	replies, errs := q.evalAll(ctx, scripts.allocate, calls)
	for i, c := range batch {
		c.reply, c.err = replies[i], errs[i]
	}
}

// scriptCall is one call of a script in a pipelined batch.
type scriptCall struct {
	keys []string
	args []any
}

// pipelined runs script once for each of calls in one round trip and returns
// their answers in order, counting them as Redis calls of kind; any failure fails
// the batch with ErrUnavailable.
func (q *pipeline) pipelined(ctx context.Context, script *redis.Script, kind string, calls []scriptCall) ([]string, error) {
	replies, errs := q.evalAll(ctx, script, calls)
	q.opts.Metrics.RedisCalls.WithLabelValues(kind).Add(float64(len(calls)))
	for _, err := range errs {
		if err != nil {
			return nil, redisErr(err)
		}
	}
	return replies, nil
}

// evalAll runs script once for each of calls in one pipeline and returns each
// call's answer and error. A call refused for want of the script (a restarted
// server forgot it) goes again alone, which loads it: a refused call ran nothing.
func (q *pipeline) evalAll(ctx context.Context, script *redis.Script, calls []scriptCall) ([]string, []error) {
	replies, errs := make([]string, len(calls)), make([]error, len(calls))
	if len(calls) == 0 {
		return replies, errs
	}
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command holds its own error
	for i, c := range calls {
		replies[i], errs[i] = cmds[i].Text()
		if errs[i] != nil && redis.HasErrorPrefix(errs[i], "NOSCRIPT") {
			replies[i], errs[i] = script.Run(ctx, q.rdb, c.keys, c.args...).Text()
		}
	}
	return replies, errs
}
