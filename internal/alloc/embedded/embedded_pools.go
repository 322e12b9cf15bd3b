package embedded

import (
	"context"
	"fmt"
	"sort"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/metrics"
)

// PutPool creates or updates a pool; see store.PutPool.
func (e *Engine) PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.PoolStatus, bool, error) {
	cfg, created, err := e.store.pools.PutPool(ctx, id, u)
	if err != nil {
		return numberd.PoolStatus{}, false, err
	}
	p, _ := e.pools.GetOrAdd(id, func() (*pool, error) { return newPool(cfg, e.opts, &e.closed), nil })
	p.lock()
	defer p.unlock()
	p.Cfg = cfg
	return p.Status(), created, nil
}

// Pool returns the live status of pool id, or numberd.ErrPoolNotFound.
func (e *Engine) Pool(ctx context.Context, id string) (numberd.PoolStatus, error) {
	p, err := e.pool(id)
	if err != nil {
		return numberd.PoolStatus{}, err
	}
	p.lock()
	defer p.unlock()
	if err := e.expire(ctx, p); err != nil {
		return numberd.PoolStatus{}, err
	}
	return p.Status(), nil
}

// Pools returns the live status of every pool, ordered by id.
func (e *Engine) Pools(ctx context.Context) ([]numberd.PoolStatus, error) {
	var out []numberd.PoolStatus
	for _, id := range ids(e.pools.All()) {
		st, err := e.Pool(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func ids(pools []*pool) []string {
	ids := make([]string, 0, len(pools))
	for _, p := range pools {
		ids = append(ids, p.id)
	}
	sort.Strings(ids)
	return ids
}

// LoadSegment adds a segment to pool after its others. A segment identical to one
// the pool has is returned with created false; see store.AddSegment for the errors.
// The segment is in the store before any of its numbers can be handed out.
func (e *Engine) LoadSegment(ctx context.Context, poolID string, n numberd.NewSegment) (numberd.SegmentStatus, bool, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	meta, created, err := e.store.segments.AddSegment(ctx, poolID, n)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	p.lock()
	defer p.unlock()
	if created {
		p.Segs = append(p.Segs, &alloc.SegmentState{Meta: meta, Next: meta.Next, ReservedHi: meta.ReservedHi})
		p.saved[meta.ID] = meta.Next
		p.refreshExpiry()
		e.opts.Logger.Info("segment loaded", "pool", poolID, "segment", meta.ID, "start", meta.Range.Start(), "end", meta.Range.End(), "source", meta.Source)
	}
	for _, s := range p.Segs {
		if s.Meta.ID == meta.ID {
			return s.Status(s == p.Active()), created, nil
		}
	}
	return numberd.SegmentStatus{}, false, fmt.Errorf("%w: segment %d", numberd.ErrSegmentNotFound, meta.ID)
}

// SegmentAdded takes in a segment the store holds already, stored by the refill
// worker.
func (e *Engine) SegmentAdded(ctx context.Context, meta numberd.Segment) error {
	p, err := e.pool(meta.Pool)
	if err != nil {
		return err
	}
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	p.lock()
	defer p.unlock()
	for _, s := range p.Segs {
		if s.Meta.ID == meta.ID {
			return nil
		}
	}
	// Segments are drawn from in the order they were stored: ids ascend.
	s := &alloc.SegmentState{Meta: meta, Next: meta.Next, ReservedHi: meta.ReservedHi}
	i := len(p.Segs)
	for i > 0 && p.Segs[i-1].Meta.ID > meta.ID {
		i--
	}
	p.Segs = append(p.Segs[:i], append([]*alloc.SegmentState{s}, p.Segs[i:]...)...)
	p.saved[meta.ID] = meta.Next
	p.Head = 0
	p.AdvanceHead()
	p.refreshExpiry()
	return nil
}

// Segments returns the segments of pool in allocation order, with live state.
func (e *Engine) Segments(ctx context.Context, poolID string) ([]numberd.SegmentStatus, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return nil, err
	}
	p.lock()
	defer p.unlock()
	if err := e.expire(ctx, p); err != nil {
		return nil, err
	}
	active := p.Active()
	out := make([]numberd.SegmentStatus, len(p.Segs))
	for i, s := range p.Segs {
		out[i] = s.Status(s == active)
	}
	return out, nil
}

// RetireSegment stops handing out segment id of pool; its unused numbers become a
// gap. Retiring a retired or used-up segment changes nothing. It returns
// numberd.ErrPoolNotFound or numberd.ErrSegmentNotFound.
func (e *Engine) RetireSegment(ctx context.Context, poolID string, id int64) (numberd.SegmentStatus, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return numberd.SegmentStatus{}, err
	}
	p.lock()
	defer p.unlock()
	for _, s := range p.Segs {
		if s.Meta.ID != id {
			continue
		}
		if s.Meta.State == numberd.SegmentOpen {
			if err := e.close(ctx, p, s, numberd.SegmentRetired, numberd.GapRetired); err != nil {
				return numberd.SegmentStatus{}, err
			}
			p.AdvanceHead()
			p.refreshExpiry()
		}
		return s.Status(s == p.Active()), nil
	}
	return numberd.SegmentStatus{}, fmt.Errorf("%w: pool %[3]s has no segment %[2]d", numberd.ErrSegmentNotFound, id, poolID)
}

// Gaps returns the gaps of pool, expired segments' included; see store.Gaps.
func (e *Engine) Gaps(ctx context.Context, poolID string) ([]numberd.Gap, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return nil, err
	}
	p.lock()
	err = e.expire(ctx, p)
	p.unlock()
	if err != nil {
		return nil, err
	}
	return e.store.gaps.List(ctx, poolID)
}

// Ready reports whether the store answers, with a *DownError naming it if not.
func (e *Engine) Ready(ctx context.Context) error {
	if err := e.store.ready.Ping(ctx); err != nil {
		return &numberd.DownError{Stores: []string{e.store.ready.Name()}, Err: err}
	}
	return nil
}

func (e *Engine) gauges() []metrics.PoolGauge {
	var out []metrics.PoolGauge
	for _, id := range ids(e.pools.All()) {
		p, err := e.pool(id)
		if err != nil {
			continue
		}
		p.lock()
		st := p.Status()
		p.unlock()
		out = append(out, metrics.PoolGauge{Pool: id, Available: st.Available, Issued: st.Issued})
	}
	return out
}
