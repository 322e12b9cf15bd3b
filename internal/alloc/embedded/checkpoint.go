package embedded

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// checkpoint writes the cursors that moved since the last checkpoint; with release
// it also lowers the high-water marks to them.
func (e *Engine) checkpoint(ctx context.Context, release bool) error {
	var errs []error
	for _, p := range e.pools.All() {
		p.lock()
		var cs []store.Cursor
		for _, s := range p.Segs {
			if p.saved[s.Meta.ID] != s.Next || (release && s.ReservedHi >= s.Next) {
				cs = append(cs, store.Cursor{SegmentID: s.Meta.ID, Next: s.Next})
			}
		}
		p.unlock()
		if len(cs) == 0 {
			continue
		}
		var err error
		if release {
			err = e.store.segments.ReleaseReservations(ctx, cs)
		} else {
			err = e.store.segments.SaveCursors(ctx, cs)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", p.id, err))
			continue
		}
		p.lock()
		for _, c := range cs {
			p.saved[c.SegmentID] = c.Next
		}
		p.unlock()
	}
	return errors.Join(errs...)
}

// janitor checkpoints cursors and purges expired idempotency records until Close.
func (e *Engine) janitor() {
	defer e.wg.Done()
	lastPurge := e.opts.Now()
	alloc.Every(e.stop, e.opts.CheckpointEvery, func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		defer cancel()
		if err := e.checkpoint(ctx, false); err != nil {
			e.opts.Logger.Warn("checkpoint failed", "err", err)
		}
		if now := e.opts.Now(); now.Sub(lastPurge) >= 10*time.Minute {
			lastPurge = now
			if n, err := e.store.records.Purge(ctx); err != nil {
				e.opts.Logger.Warn("purging idempotency records failed", "err", err)
			} else if n > 0 {
				e.opts.Logger.Info("purged expired idempotency records", "count", n)
			}
		}
	})
}
