package embedded

import (
	"context"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
)

// expire closes the open segments of p whose expires_at has passed; their unused
// numbers become a gap. Called with p.mu held.
func (e *Engine) expire(ctx context.Context, p *pool) error {
	now := e.opts.Now()
	if p.nextExpiry.IsZero() || now.Before(p.nextExpiry) {
		return nil
	}
	for _, s := range p.Segs[p.Head:] {
		if s.Open() && !s.Meta.ExpiresAt.IsZero() && !now.Before(s.Meta.ExpiresAt) {
			if err := e.close(ctx, p, s, numberd.SegmentExpired, numberd.GapExpired); err != nil {
				return err
			}
		}
	}
	p.AdvanceHead()
	p.refreshExpiry()
	return nil
}

// close moves open segment s to state, its unused numbers to a gap. Called with
// p.mu held.
func (e *Engine) close(ctx context.Context, p *pool, s *alloc.SegmentState, state, reason string) error {
	var gap *numberd.Gap
	if s.Next <= s.Meta.Range.Hi {
		gap = &numberd.Gap{Pool: p.id, SegmentID: s.Meta.ID, Range: s.Meta.Range, Reason: reason}
		gap.Range.Lo = s.Next
	}
	if _, err := e.store.segments.CloseSegment(ctx, s.Meta.ID, state, s.Next, gap); err != nil {
		return err
	}
	s.Meta.State = state
	if gap != nil {
		e.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(gap.Count()))
		e.opts.Logger.Info("segment closed", "pool", p.id, "segment", s.Meta.ID, "state", state, "gap_count", gap.Count())
	}
	return nil
}
