package alloc

import (
	"context"
	"fmt"
	"sort"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/metrics"
)

// PutPool creates or updates a pool; see store.PutPool.
func (e *Embedded) PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.PoolStatus, bool, error) {
	cfg, created, err := e.store.PutPool(ctx, id, u)
	if err != nil {
		return numberd.PoolStatus{}, false, err
	}
	p, _ := e.pools.getOrAdd(id, func() (*pool, error) { return e.newPool(cfg), nil })
	e.lockPool(p)
	defer e.unlockPool(p)
	p.cfg = cfg
	return p.status(), created, nil
}

// Pool returns the live status of pool id, or numberd.ErrPoolNotFound.
func (e *Embedded) Pool(ctx context.Context, id string) (numberd.PoolStatus, error) {
	p, err := e.pool(id)
	if err != nil {
		return numberd.PoolStatus{}, err
	}
	e.lockPool(p)
	defer e.unlockPool(p)
	if err := e.expire(ctx, p); err != nil {
		return numberd.PoolStatus{}, err
	}
	return p.status(), nil
}

// Pools returns the live status of every pool, ordered by id.
func (e *Embedded) Pools(ctx context.Context) ([]numberd.PoolStatus, error) {
	var out []numberd.PoolStatus
	for _, id := range e.poolIDs() {
		st, err := e.Pool(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (e *Embedded) poolIDs() []string {
	pools := e.pools.all()
	ids := make([]string, 0, len(pools))
	for _, p := range pools {
		ids = append(ids, p.id)
	}
	sort.Strings(ids)
	return ids
}

// status summarises p. Called with p.mu held.
func (p *pool) status() numberd.PoolStatus {
	st := numberd.PoolStatus{Pool: p.cfg, Refill: numberd.RefillStatus{State: numberd.RefillIdle, UpdatedAt: p.cfg.UpdatedAt, EffectiveThreshold: p.cfg.RefillThreshold}}
	for _, s := range p.segs {
		st.Issued = addSat(st.Issued, s.next-s.meta.Range.Lo-s.recovered)
	}
	for i, s := range p.segs[p.head:] {
		if !s.open() {
			continue
		}
		st.Available = addSat(st.Available, s.meta.Range.Hi-s.next+1)
		if i == 0 {
			active := p.segmentStatus(s, true)
			st.Active = &active
		} else {
			st.Queued++
		}
	}
	return st
}

func (p *pool) segmentStatus(s *seg, active bool) numberd.SegmentStatus {
	st := numberd.SegmentStatus{Segment: s.meta, Next: s.next, Used: s.next - s.meta.Range.Lo - s.recovered}
	st.ReservedHi, st.Segment.Next = s.reservedHi, s.next
	switch {
	case s.meta.State == numberd.SegmentRetired:
		st.State = numberd.StatusRetired
	case !s.open():
		st.State = numberd.StatusExhausted
	case active:
		st.State = numberd.StatusActive
	default:
		st.State = numberd.StatusQueued
	}
	return st
}

// LoadSegment adds a segment to pool after its others. A segment identical to one
// the pool has is returned with created false; see store.AddSegment for the errors.
// The segment is in the store before any of its numbers can be handed out.
func (e *Embedded) LoadSegment(ctx context.Context, poolID string, n numberd.NewSegment) (numberd.SegmentStatus, bool, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	meta, created, err := e.store.AddSegment(ctx, poolID, n)
	if err != nil {
		return numberd.SegmentStatus{}, false, err
	}
	e.lockPool(p)
	defer e.unlockPool(p)
	if created {
		p.segs = append(p.segs, &seg{meta: meta, next: meta.Next, reservedHi: meta.ReservedHi})
		p.saved[meta.ID] = meta.Next
		p.refreshExpiry()
		e.opts.Logger.Info("segment loaded", "pool", poolID, "segment", meta.ID, "start", meta.Range.Start(), "end", meta.Range.End(), "source", meta.Source)
	}
	for _, s := range p.segs {
		if s.meta.ID == meta.ID {
			return p.segmentStatus(s, s == p.activeSeg()), created, nil
		}
	}
	return numberd.SegmentStatus{}, false, fmt.Errorf("%w: segment %d", numberd.ErrSegmentNotFound, meta.ID)
}

// SegmentAdded takes in a segment the store holds already, stored by the refill
// worker.
func (e *Embedded) SegmentAdded(ctx context.Context, meta numberd.Segment) error {
	p, err := e.pool(meta.Pool)
	if err != nil {
		return err
	}
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	e.lockPool(p)
	defer e.unlockPool(p)
	for _, s := range p.segs {
		if s.meta.ID == meta.ID {
			return nil
		}
	}
	// Segments are drawn from in the order they were stored: ids ascend.
	s := &seg{meta: meta, next: meta.Next, reservedHi: meta.ReservedHi}
	i := len(p.segs)
	for i > 0 && p.segs[i-1].meta.ID > meta.ID {
		i--
	}
	p.segs = append(p.segs[:i], append([]*seg{s}, p.segs[i:]...)...)
	p.saved[meta.ID] = meta.Next
	p.head = 0
	p.advanceHead()
	p.refreshExpiry()
	return nil
}

func (p *pool) activeSeg() *seg {
	for _, s := range p.segs[p.head:] {
		if s.open() {
			return s
		}
	}
	return nil
}

// Segments returns the segments of pool in allocation order, with live state.
func (e *Embedded) Segments(ctx context.Context, poolID string) ([]numberd.SegmentStatus, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return nil, err
	}
	e.lockPool(p)
	defer e.unlockPool(p)
	if err := e.expire(ctx, p); err != nil {
		return nil, err
	}
	active := p.activeSeg()
	out := make([]numberd.SegmentStatus, len(p.segs))
	for i, s := range p.segs {
		out[i] = p.segmentStatus(s, s == active)
	}
	return out, nil
}

// RetireSegment stops handing out segment id of pool; its unused numbers become a
// gap. Retiring a retired or used-up segment changes nothing. It returns
// numberd.ErrPoolNotFound or numberd.ErrSegmentNotFound.
func (e *Embedded) RetireSegment(ctx context.Context, poolID string, id int64) (numberd.SegmentStatus, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return numberd.SegmentStatus{}, err
	}
	e.lockPool(p)
	defer e.unlockPool(p)
	for _, s := range p.segs {
		if s.meta.ID != id {
			continue
		}
		if s.meta.State == numberd.SegmentOpen {
			if err := e.close(ctx, p, s, numberd.SegmentRetired, numberd.GapRetired); err != nil {
				return numberd.SegmentStatus{}, err
			}
			p.advanceHead()
			p.refreshExpiry()
		}
		return p.segmentStatus(s, s == p.activeSeg()), nil
	}
	return numberd.SegmentStatus{}, fmt.Errorf("%w: pool %[3]s has no segment %[2]d", numberd.ErrSegmentNotFound, id, poolID)
}

// Gaps returns the gaps of pool, expired segments' included; see store.Gaps.
func (e *Embedded) Gaps(ctx context.Context, poolID string) ([]numberd.Gap, error) {
	p, err := e.pool(poolID)
	if err != nil {
		return nil, err
	}
	e.lockPool(p)
	err = e.expire(ctx, p)
	e.unlockPool(p)
	if err != nil {
		return nil, err
	}
	return e.store.Gaps(ctx, poolID)
}

// Ready reports whether the store answers, with a *DownError naming it if not.
func (e *Embedded) Ready(ctx context.Context) error {
	if err := e.store.Ping(ctx); err != nil {
		return &numberd.DownError{Stores: []string{e.store.Name()}, Err: err}
	}
	return nil
}

func (e *Embedded) gauges() []metrics.PoolGauge {
	var out []metrics.PoolGauge
	for _, id := range e.poolIDs() {
		p, err := e.pool(id)
		if err != nil {
			continue
		}
		e.lockPool(p)
		st := p.status()
		e.unlockPool(p)
		out = append(out, metrics.PoolGauge{Pool: id, Available: st.Available, Issued: st.Issued})
	}
	return out
}
