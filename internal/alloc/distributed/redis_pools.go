package distributed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/store"
)

// view assembles p's live state: the store's segments with the cursors and closes
// that Redis holds. Without Redis it answers from the store alone.
func (e *Engine) view(ctx context.Context, p *rpool) (*alloc.PoolView, error) {
	if err := e.sweep(ctx, p); err != nil && !errors.Is(err, numberd.ErrRedisUnavailable) {
		return nil, err
	}
	cfg, segs, rv, err := e.load(ctx, p)
	if err != nil && !errors.Is(err, numberd.ErrRedisUnavailable) {
		return nil, err
	}
	gaps, err := e.store.Gaps(ctx, p.id)
	if err != nil {
		return nil, err
	}
	recovered := alloc.Recovered(gaps)
	return assemble(p, cfg, segs, rv, recovered), nil
}

// assemble is p's live state from the store's config and segments, Redis's view of
// them and the numbers recovery gaps took from each segment.
func assemble(p *rpool, cfg numberd.Pool, segs []numberd.Segment, rv redisView, recovered map[int64]int64) *alloc.PoolView {
	vp := &alloc.PoolView{Cfg: cfg}
	for _, m := range segs {
		s := &alloc.SegmentState{Meta: m, Next: m.Next, ReservedHi: m.ReservedHi, Recovered: recovered[m.ID]}
		if r := rv.segs[m.ID]; rv.ok && r.present {
			s.Next = max(s.Next, m.Range.Lo+r.used)
			if r.state != "" && m.State == numberd.SegmentOpen {
				s.Meta.State = r.state
			}
		}
		vp.Segs = append(vp.Segs, s)
	}
	vp.AdvanceHead()
	return vp
}

// PutPool creates or updates a pool; see store.PutPool.
func (e *Engine) PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.PoolStatus, bool, error) {
	_, created, err := e.store.PutPool(ctx, id, u)
	if err != nil {
		return numberd.PoolStatus{}, false, err
	}
	st, err := e.Pool(ctx, id)
	return st, created, err
}

// Pool returns the live status of pool id, or numberd.ErrPoolNotFound.
func (e *Engine) Pool(ctx context.Context, id string) (numberd.PoolStatus, error) {
	p, err := e.pool(ctx, id)
	if err != nil {
		return numberd.PoolStatus{}, err
	}
	vp, err := e.view(ctx, p)
	if err != nil {
		return numberd.PoolStatus{}, err
	}
	return vp.Status(), nil
}

// Pools returns the live status of every pool, ordered by id, as Pool would
// return each, in a fixed number of round trips however many pools there are:
// the store's pools, segments and recovery gaps in one query each, and Redis's
// sweeps and views of every pool in one pipeline each. Pool by pool, a listing of
// 54 pools took 0.1–0.8 s on a busy machine.
func (e *Engine) Pools(ctx context.Context) ([]numberd.PoolStatus, error) {
	cfgs, err := e.store.Pools(ctx)
	if err != nil {
		return nil, err
	}
	segs, err := e.store.AllSegments(ctx)
	if err != nil {
		return nil, err
	}
	ps := make([]*rpool, len(cfgs))
	for i, c := range cfgs {
		if ps[i], err = e.adopt(c, segs[c.ID]); err != nil {
			return nil, err
		}
	}
	if err := e.sweepAll(ctx, ps); err != nil && !errors.Is(err, numberd.ErrRedisUnavailable) {
		return nil, err
	}
	// The sweep may have closed segments: read them again.
	if segs, err = e.store.AllSegments(ctx); err != nil {
		return nil, err
	}
	views, err := e.peekAll(ctx, ps, segs)
	if err != nil && !errors.Is(err, numberd.ErrRedisUnavailable) {
		return nil, err
	}
	recovered, err := e.store.RecoveredBySegment(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]numberd.PoolStatus, len(ps))
	for i, p := range ps {
		p.seen(cfgs[i].Epoch)
		p.learn(segs[p.id]...)
		out[i] = assemble(p, cfgs[i], segs[p.id], views[i], recovered).Status()
	}
	return out, nil
}

// Segments returns the segments of pool in allocation order, with live state.
func (e *Engine) Segments(ctx context.Context, poolID string) ([]numberd.SegmentStatus, error) {
	p, err := e.pool(ctx, poolID)
	if err != nil {
		return nil, err
	}
	vp, err := e.view(ctx, p)
	if err != nil {
		return nil, err
	}
	active := vp.Active()
	out := make([]numberd.SegmentStatus, len(vp.Segs))
	for i, s := range vp.Segs {
		out[i] = s.Status(s == active)
	}
	return out, nil
}

func (e *Engine) segmentStatus(ctx context.Context, p *rpool, id int64) (numberd.SegmentStatus, error) {
	segs, err := e.Segments(ctx, p.id)
	if err != nil {
		return numberd.SegmentStatus{}, err
	}
	for _, s := range segs {
		if s.ID == id {
			return s, nil
		}
	}
	return numberd.SegmentStatus{}, fmt.Errorf("%w: pool %s has no segment %d", numberd.ErrSegmentNotFound, p.id, id)
}

// LoadSegment adds a segment to pool after its others; see store.AddSegment. The
// segment is in the store before Redis learns of it, and joins Redis with no lease.
// If Redis cannot be told now, the next extension or reseed adds it.
func (e *Engine) LoadSegment(ctx context.Context, poolID string, n numberd.NewSegment) (numberd.SegmentStatus, bool, error) {
	p, err := e.pool(ctx, poolID)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	seg, created, err := e.store.AddSegment(ctx, poolID, n)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	p.remember(seg)
	if created {
		e.opts.Logger.Info("segment loaded", "pool", poolID, "segment", seg.ID, "start", seg.Range.Start(), "end", seg.Range.End(), "source", seg.Source)
		if err := e.announce(ctx, p); err != nil {
			e.opts.Logger.Warn("telling Redis of a new segment failed; it joins at the next extension", "pool", poolID, "segment", seg.ID, "err", err)
		}
	}
	st, err := e.segmentStatus(ctx, p, seg.ID)
	return st, created, err
}

// SegmentAdded takes in a segment the store holds already, stored by the refill
// worker: Redis learns of it at once, or at the next extension.
func (e *Engine) SegmentAdded(ctx context.Context, seg numberd.Segment) error {
	p, err := e.pool(ctx, seg.Pool)
	if err != nil {
		return err
	}
	p.remember(seg)
	return e.announce(ctx, p)
}

// announce adds the store's open segments that p's Redis state lacks.
func (e *Engine) announce(ctx context.Context, p *rpool) error {
	cfg, segs, view, err := e.load(ctx, p)
	if err != nil || !view.ok || view.gen != cfg.Epoch {
		return err // no state of this generation: the reseed will include the segment
	}
	_, err = e.addMissing(ctx, p, cfg.Epoch, segs, view)
	return err
}

// RetireSegment stops handing out segment id of pool; its unused numbers become a
// gap. Redis stops first, then the store records it; retiring again is a no-op.
func (e *Engine) RetireSegment(ctx context.Context, poolID string, id int64) (numberd.SegmentStatus, error) {
	p, err := e.pool(ctx, poolID)
	if err != nil {
		return numberd.SegmentStatus{}, err
	}
	for attempt := 0; ; attempt++ {
		seg, err := e.store.Segment(ctx, poolID, id)
		if err != nil {
			return numberd.SegmentStatus{}, err
		}
		if seg.State != numberd.SegmentOpen {
			break
		}
		if attempt == 3 {
			return numberd.SegmentStatus{}, fmt.Errorf("%w: the pool's Redis state keeps changing", numberd.ErrRedisUnavailable)
		}
		done, err := e.retireOnce(ctx, p, seg)
		if err != nil {
			return numberd.SegmentStatus{}, err
		}
		if done {
			break
		}
	}
	return e.segmentStatus(ctx, p, id)
}

// retireOnce takes seg out of Redis's queue and records it retired in the store,
// both under one generation of the pool's state. It reports false if the state
// was reseeded meanwhile: the reseed may have put the segment back, above numbers
// handed out since, and only a retire under the new generation counts them.
func (e *Engine) retireOnce(ctx context.Context, p *rpool, seg numberd.Segment) (bool, error) {
	reply, err := scripts.retire.Run(ctx, e.rdb, []string{p.keys.meta, p.keys.seg}, seg.ID, numberd.SegmentRetired).Text()
	e.opts.Metrics.RedisCalls.WithLabelValues("retire").Inc()
	if err != nil {
		return false, redisErr(err)
	}
	var used, gen int64
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed retire answer %q", numberd.ErrRedisUnavailable, reply)
	switch {
	case len(f) == 1 && f[0] == "RESEED":
		return false, e.reseed(ctx, p, "lost", -1)
	case len(f) == 2 && f[0] == "ABSENT":
		// This generation never had the segment, and now that Redis marks it
		// retired none will: nothing of it went out above the store's high-water
		// mark, which no extension raises any more.
		if seg, err = e.store.Segment(ctx, p.id, seg.ID); err != nil {
			return false, err
		}
		used = max(seg.ReservedHi, seg.Next-1) - seg.Range.Lo + 1
		gen, err = strconv.ParseInt(f[1], 10, 64)
	case len(f) == 3 && f[0] == "OK":
		used, err = strconv.ParseInt(f[1], 10, 64)
		if err == nil {
			gen, err = strconv.ParseInt(f[2], 10, 64)
		}
	default:
		err = malformed
	}
	if err != nil {
		return false, malformed
	}
	stale, err := e.closeSegment(ctx, p, gen, seg.ID, used, numberd.SegmentRetired, numberd.GapRetired)
	return !stale && err == nil, err
}

// Gaps returns the gaps of pool, expired segments' included; see store.Gaps.
func (e *Engine) Gaps(ctx context.Context, poolID string) ([]numberd.Gap, error) {
	p, err := e.pool(ctx, poolID)
	if err != nil {
		return nil, err
	}
	if err := e.sweep(ctx, p); err != nil && !errors.Is(err, numberd.ErrRedisUnavailable) {
		return nil, err
	}
	return e.store.Gaps(ctx, poolID)
}

// sweep closes the segments that expired by Redis's clock: an allocate call that
// asks for nothing, and the store records what it reports.
func (e *Engine) sweep(ctx context.Context, p *rpool) error {
	keys, args := allocateArgs(p, e.memoKey(p), nil, 0)
	reply, err := scripts.allocate.Run(ctx, e.rdb, keys, args...).Text()
	e.opts.Metrics.RedisCalls.WithLabelValues("sweep").Inc()
	if err != nil {
		return redisErr(err)
	}
	return e.swept(ctx, p, reply)
}

// sweepAll sweeps every pool of ps in one round trip.
func (e *Engine) sweepAll(ctx context.Context, ps []*rpool) error {
	calls := make([]scriptCall, len(ps))
	for i, p := range ps {
		calls[i].keys, calls[i].args = allocateArgs(p, e.memoKey(p), nil, 0)
	}
	replies, err := e.pipelined(ctx, scripts.allocate, "sweep", calls)
	if err != nil {
		return err
	}
	for i, p := range ps {
		if err := e.swept(ctx, p, replies[i]); err != nil {
			return err
		}
	}
	return nil
}

// swept records the segments a sweep of p found expired.
func (e *Engine) swept(ctx context.Context, p *rpool, reply string) error {
	f := strings.Fields(reply)
	if len(f) < 2 || f[0] != "OK" {
		return nil // no state to sweep: the reseed closes what expired
	}
	gen, _ := strconv.ParseInt(f[1], 10, 64)
	for _, ev := range f[2:] {
		if id, used, ok := parseEvent(ev, "E:"); ok {
			if _, err := e.closeSegment(ctx, p, gen, id, used, numberd.SegmentExpired, numberd.GapExpired); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ready reports whether Redis and the store answer, with a *DownError naming those
// that do not.
func (e *Engine) Ready(ctx context.Context) error {
	var down []string
	var errs []error
	if err := e.rdb.Ping(ctx).Err(); err != nil {
		down, errs = append(down, "redis"), append(errs, redisErr(err))
	}
	if err := e.store.Ping(ctx); err != nil {
		down, errs = append(down, e.store.Name()), append(errs, err)
	}
	if len(down) > 0 {
		return &numberd.DownError{Stores: down, Err: errors.Join(errs...)}
	}
	return nil
}

func (e *Engine) known() []*rpool { return e.pools.All() }

func (e *Engine) gauges() []metrics.PoolGauge {
	var out []metrics.PoolGauge
	for _, p := range e.known() {
		out = append(out, metrics.PoolGauge{Pool: p.id, Available: p.available.Load(), Issued: -1})
	}
	return out
}

// checkpoint shares, through the store, how far the pools this node knows went,
// in a fixed number of round trips however many pools that is: one query reads
// the open segments of every pool the node knows, which refreshes each pool's
// generation and the floors the checkpoints of every node set (see rpool.ckpt);
// then one pipeline reads Redis's cursors of the pools this node served lately,
// and one statement writes those that are ahead of the store's. That narrows the
// gap a lost Redis leaves, and lets every node refuse a state restored from keys
// older than what any node handed out one pass earlier. It also records the
// closes that Redis made and the store missed.
//
// What stays undetectable: keys of a pool restored, all of them, to a copy taken
// within the same lease and less than about two passes (the writer's and the
// reader's) before what was handed out since, then served by a node that saw no
// newer version of the state. Its version, generation, identity and lease all
// look right, and no durable mark is yet above it; only a write to the store per
// allocation would close that, which is what Redis is there to spare.
func (e *Engine) checkpoint(ctx context.Context) error {
	known := e.known()
	if len(known) == 0 {
		return nil
	}
	ids := make([]string, len(known))
	since := time.Now().Add(-3 * e.opts.CheckpointEvery).UnixNano()
	var busy []*rpool
	for i, p := range known {
		ids[i] = p.id
		if p.touchedAt.Load() >= since {
			busy = append(busy, p)
		}
	}
	// Redis's time before the read stamps the floors it brings: allocate.lua
	// refuses them once they are older than maxFloorAge by that same clock.
	at, timeErr := e.rdb.Time(ctx).Result()
	segs, err := e.store.OpenSegments(ctx, ids)
	if err != nil {
		return err
	}
	for _, p := range known {
		p.learn(segs[p.id]...)
		if timeErr == nil {
			p.stampFloors(at.UnixMilli())
		}
	}
	if len(busy) == 0 {
		return nil
	}
	ms := make([]marks, len(busy))
	for i, p := range busy {
		ms[i] = p.marks()
	}
	views, err := e.peekAll(ctx, busy, segs)
	if err != nil {
		return err
	}
	var cs []store.Cursor
	var errs []error
	for i, p := range busy {
		view := views[i]
		if !view.ok || ms[i].behind(view) {
			continue // the reseed it needs records what it skips
		}
		for _, s := range segs[p.id] {
			r := view.segs[s.ID]
			switch {
			case !r.present:
			case r.state != "":
				reason := numberd.GapRetired
				if r.state == numberd.SegmentExpired {
					reason = numberd.GapExpired
				}
				if _, err := e.closeSegment(ctx, p, view.gen, s.ID, r.used, r.state, reason); err != nil {
					errs = append(errs, fmt.Errorf("pool %s: %w", p.id, err))
				}
			case s.Range.Lo+r.used > s.Next:
				cs = append(cs, store.Cursor{SegmentID: s.ID, Next: s.Range.Lo + r.used})
			}
		}
	}
	if len(cs) > 0 {
		errs = append(errs, e.store.SaveCursors(ctx, cs))
	}
	return errors.Join(errs...)
}

// janitor checkpoints, and purges expired idempotency records every ten
// minutes, until Close. Every node purges: a DELETE of what expired is the same
// from any of them.
func (e *Engine) janitor() {
	defer e.wg.Done()
	tick := time.NewTicker(e.opts.CheckpointEvery)
	defer tick.Stop()
	lastPurge := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		if err := e.checkpoint(ctx); err != nil {
			e.opts.Logger.Warn("checkpoint failed", "err", err)
		}
		if time.Since(lastPurge) >= 10*time.Minute {
			lastPurge = time.Now()
			if n, err := e.store.PurgeIdempotency(ctx); err != nil {
				e.opts.Logger.Warn("purging idempotency records failed", "err", err)
			} else if n > 0 {
				e.opts.Logger.Debug("purged expired idempotency records", "count", n)
			}
		}
		cancel()
	}
}
