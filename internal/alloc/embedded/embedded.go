// Package embedded is numberd's engine of embedded mode: one process, its pools'
// live state in memory, and an SQLite store it alone writes, ahead of need.
package embedded

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// Engine is the in-process engine of embedded mode. It is the only writer of its
// store (OpenSQLite locks the data directory), so it keeps every pool's live state
// in memory and writes to the store only to reserve numbers ahead of need, to record
// gaps and closed segments, and to checkpoint.
type Engine struct {
	store stores
	opts  alloc.Options

	pools  alloc.Registry[*pool]
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup // background reservations and the janitor
}

var _ numberd.Engine = (*Engine)(nil)

// Open loads every pool's state from st and resumes allocation. A segment
// whose high-water mark is above its checkpointed cursor was reserved by a process
// that did not stop cleanly: its numbers up to the mark may have been handed out, so
// allocation resumes above the mark and the range is recorded as a recovery gap.
func Open(ctx context.Context, st *store.Store, opts alloc.Options) (*Engine, error) {
	e := &Engine{store: storesOf(st), opts: opts.WithDefaults(), stop: make(chan struct{})}
	cfgs, err := st.Pools(ctx)
	if err != nil {
		return nil, err
	}
	pools := map[string]*pool{}
	for _, cfg := range cfgs {
		p, err := e.loadPool(ctx, cfg)
		if err != nil {
			return nil, err
		}
		pools[cfg.ID] = p
	}
	e.pools.Init(pools)
	e.opts.Metrics.WatchPools(e.gauges)
	e.wg.Add(1)
	go e.janitor()
	return e, nil
}

func (e *Engine) loadPool(ctx context.Context, cfg numberd.Pool) (*pool, error) {
	p := newPool(cfg, e.opts, &e.closed)
	metas, err := e.store.segments.Segments(ctx, cfg.ID)
	if err != nil {
		return nil, err
	}
	gaps, err := e.store.gaps.List(ctx, cfg.ID)
	if err != nil {
		return nil, err
	}
	recovered := alloc.Recovered(gaps)
	for _, m := range metas {
		s := &alloc.SegmentState{Meta: m, Next: m.Next, ReservedHi: m.ReservedHi, Recovered: recovered[m.ID]}
		if m.State == numberd.SegmentOpen && m.ReservedHi >= m.Next {
			if err := e.recover(ctx, p, s); err != nil {
				return nil, err
			}
		}
		p.Segs = append(p.Segs, s)
		p.saved[m.ID] = s.Next
	}
	p.AdvanceHead()
	p.refreshExpiry()
	return p, nil
}

// recover moves s's cursor above its high-water mark after an unclean stop. The gap
// is written before the cursor, and a gap recorded twice is kept once, so a crash
// here repeats safely.
func (e *Engine) recover(ctx context.Context, p *pool, s *alloc.SegmentState) error {
	gap := numberd.Gap{Pool: p.id, SegmentID: s.Meta.ID, Range: s.Meta.Range, Reason: numberd.GapRecovery}
	gap.Range.Lo, gap.Range.Hi = s.Next, s.ReservedHi
	if err := e.store.gaps.Add(ctx, gap); err != nil {
		return err
	}
	if err := e.store.segments.SaveCursors(ctx, []store.Cursor{{SegmentID: s.Meta.ID, Next: s.ReservedHi + 1}}); err != nil {
		return err
	}
	e.opts.Logger.Warn("resumed above the durable high-water mark after an unclean stop",
		"pool", p.id, "segment", s.Meta.ID, "gap_start", gap.Range.Start(), "gap_end", gap.Range.End(), "gap_count", gap.Count())
	e.opts.Metrics.GapNumbers.WithLabelValues(p.id, numberd.GapRecovery).Add(float64(gap.Count()))
	s.Recovered += gap.Count()
	s.Next = s.ReservedHi + 1
	return nil
}

func (e *Engine) pool(id string) (*pool, error) {
	p, ok := e.pools.Get(id)
	if !ok {
		return nil, fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, id)
	}
	return p, nil
}

// Close stops the engine: allocation ends, background work finishes, and the
// cursors are written with the unissued reservations handed back, so a restart
// resumes exactly where this process stopped.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	// Reservations start under their pool's lock after a look at the flag: once
	// every pool has been locked, those that looked too early are counted in wg
	// and the rest will see the flag.
	for _, p := range e.pools.All() {
		p.lock()
		p.unlock()
	}
	e.wg.Wait()
	return e.checkpoint(ctx, true)
}
