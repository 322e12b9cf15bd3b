package embedded

import (
	"context"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// reserveIfLow starts a reservation when fewer than half a lease of p's numbers
// are reserved ahead. Called with p.mu held.
func (e *Engine) reserveIfLow(p *pool) {
	if p.reservedAhead(p.lease.Size) < p.lease.Size/2 {
		e.reserve(p, p.lease.Size)
	}
}

// reserve makes sure a reservation covering the next need numbers of p is under way
// and returns it. At most one runs per pool; it writes to the store without p.mu, so
// allocation of already reserved numbers goes on meanwhile. Called with p.mu held.
func (e *Engine) reserve(p *pool, need int64) *alloc.Extension {
	if p.extension != nil {
		return p.extension
	}
	if e.closed.Load() {
		// Close has handed the reservations back, or is about to: a new one
		// would strand a lease as a recovery gap at the next start.
		ext := &alloc.Extension{Done: make(chan struct{}), Err: numberd.ErrClosed}
		close(ext.Done)
		return ext
	}
	p.lease.Resize(e.opts)
	need = max(need, p.lease.Size)
	type raise struct {
		s  *alloc.SegmentState
		to int64
	}
	var raises []raise
	var rs []store.Reservation
	var cs []store.Cursor
	for _, s := range p.Segs[p.Head:] {
		if need <= 0 {
			break
		}
		if !s.Open() {
			continue
		}
		if s.Next > p.saved[s.Meta.ID] {
			cs = append(cs, store.Cursor{SegmentID: s.Meta.ID, Next: s.Next})
		}
		to := s.Next + min(need, s.Meta.Range.Hi-s.Next+1) - 1
		if to > s.ReservedHi {
			raises = append(raises, raise{s, to})
			rs = append(rs, store.Reservation{SegmentID: s.Meta.ID, From: s.ReservedHi, To: to})
		}
		need -= to - s.Next + 1
	}
	ext := &alloc.Extension{Done: make(chan struct{})}
	if len(rs) == 0 {
		close(ext.Done)
		return ext
	}
	p.extension = ext
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		err := e.store.segments.Reserve(ctx, rs, cs)
		cancel()
		p.lock()
		if err == nil {
			for _, r := range raises {
				r.s.ReservedHi = max(r.s.ReservedHi, r.to)
			}
			for _, c := range cs {
				p.saved[c.SegmentID] = max(p.saved[c.SegmentID], c.Next)
			}
		}
		ext.Err = err
		p.extension = nil
		close(ext.Done)
		p.unlock()
		if err != nil {
			e.opts.Metrics.Reservations.WithLabelValues("error").Inc()
			e.opts.Logger.Error("reserving numbers failed", "pool", p.id, "err", err)
			return
		}
		e.opts.Metrics.Reservations.WithLabelValues("ok").Inc()
	}()
	return ext
}
