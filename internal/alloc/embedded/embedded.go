// Package embedded is numberd's engine of embedded mode: one process, its pools'
// live state in memory, and an SQLite store it alone writes, ahead of need.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// Engine is the in-process engine of embedded mode. It is the only writer of its
// store (OpenSQLite locks the data directory), so it keeps every pool's live state
// in memory and writes to the store only to reserve numbers ahead of need, to record
// gaps and closed segments, and to checkpoint.
type Engine struct {
	store *store.Store
	opts  alloc.Options

	pools  alloc.Registry[*pool]
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup // background reservations and the janitor
}

var _ numberd.Engine = (*Engine)(nil)

// pool is one pool's live state. mu guards every field but cfg's immutable Digits
// and window, and is taken and given back by lockPool and unlockPool, never alone
// (see window); idempotent requests also hold idemMu, from lookup to the stored
// answer, so two requests with one key cannot both allocate; loadMu orders
// segment loads.
type pool struct {
	id     string
	mu     sync.Mutex
	idemMu sync.Mutex
	loadMu sync.Mutex
	window atomic.Pointer[window]

	alloc.PoolView

	nextExpiry time.Time        // earliest expires_at of an open segment, zero if none
	extension  *alloc.Extension // the reservation in flight, if any
	lease      alloc.Lease
	saved      map[int64]int64 // cursors as last written to the store
}

// Open loads every pool's state from st and resumes allocation. A segment
// whose high-water mark is above its checkpointed cursor was reserved by a process
// that did not stop cleanly: its numbers up to the mark may have been handed out, so
// allocation resumes above the mark and the range is recorded as a recovery gap.
func Open(ctx context.Context, st *store.Store, opts alloc.Options) (*Engine, error) {
	e := &Engine{store: st, opts: opts.WithDefaults(), stop: make(chan struct{})}
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

func (e *Engine) newPool(cfg numberd.Pool) *pool {
	return &pool{id: cfg.ID, PoolView: alloc.PoolView{Cfg: cfg}, lease: alloc.NewLease(e.opts), saved: map[int64]int64{}}
}

func (e *Engine) loadPool(ctx context.Context, cfg numberd.Pool) (*pool, error) {
	p := e.newPool(cfg)
	metas, err := e.store.Segments(ctx, cfg.ID)
	if err != nil {
		return nil, err
	}
	gaps, err := e.store.Gaps(ctx, cfg.ID)
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
	if err := e.store.AddGap(ctx, gap); err != nil {
		return err
	}
	if err := e.store.SaveCursors(ctx, []store.Cursor{{SegmentID: s.Meta.ID, Next: s.ReservedHi + 1}}); err != nil {
		return err
	}
	e.opts.Logger.Warn("resumed above the durable high-water mark after an unclean stop",
		"pool", p.id, "segment", s.Meta.ID, "gap_start", gap.Range.Start(), "gap_end", gap.Range.End(), "gap_count", gap.Count())
	e.opts.Metrics.GapNumbers.WithLabelValues(p.id, numberd.GapRecovery).Add(float64(gap.Count()))
	s.Recovered += gap.Count()
	s.Next = s.ReservedHi + 1
	return nil
}

func (p *pool) refreshExpiry() {
	p.nextExpiry = time.Time{}
	for _, s := range p.Segs[p.Head:] {
		if exp := s.Meta.ExpiresAt; s.Open() && !exp.IsZero() && (p.nextExpiry.IsZero() || exp.Before(p.nextExpiry)) {
			p.nextExpiry = exp
		}
	}
}

func (e *Engine) pool(id string) (*pool, error) {
	p, ok := e.pools.Get(id)
	if !ok {
		return nil, fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, id)
	}
	return p, nil
}

// Allocate hands out req.Count numbers of req.Pool, all or none. It returns
// ErrInvalid for a count out of range, numberd.ErrPoolNotFound, ErrExhausted when the
// pool has fewer numbers left, ErrIdempotencyConflict for a key reused with another
// count, and numberd.ErrUnavailable or a context error when the store failed or was
// too slow; in every error case nothing was consumed.
func (e *Engine) Allocate(ctx context.Context, req numberd.Request) (numberd.Allocation, error) {
	start := e.opts.Now()
	a, err := e.allocate(ctx, req, start)
	alloc.Observe(e.opts.Metrics, req.Pool, a, err, e.opts.Now().Sub(start))
	return a, err
}

func (e *Engine) allocate(ctx context.Context, req numberd.Request, now time.Time) (numberd.Allocation, error) {
	if err := req.Validate(); err != nil {
		return numberd.Allocation{}, err
	}
	p, err := e.pool(req.Pool)
	if err != nil {
		return numberd.Allocation{}, err
	}
	if req.Idempotency == nil {
		if span, ok := e.takeFast(p, int64(req.Count), now); ok {
			return numberd.Allocation{Pool: p.id, Spans: []segment.Range{span}}, nil
		}
		e.lockPool(p)
		defer e.unlockPool(p)
		spans, _, err := e.take(ctx, p, req.Count)
		return numberd.Allocation{Pool: p.id, Spans: spans}, err
	}

	p.idemMu.Lock()
	defer p.idemMu.Unlock()
	key := req.Idempotency
	rec, found, err := e.store.Idempotency(ctx, p.id, key.Scope, key.Key)
	if err != nil {
		return numberd.Allocation{}, err
	}
	if found {
		if rec.Fingerprint != req.Fingerprint() {
			return numberd.Allocation{}, fmt.Errorf("%w: key %q was used with %s", numberd.ErrIdempotencyConflict, key.Key, rec.Fingerprint)
		}
		spans, err := alloc.DecodeSpans(rec.Answer, p.Cfg.Digits)
		return numberd.Allocation{Pool: p.id, Spans: spans, Replayed: true}, err
	}
	e.lockPool(p)
	defer e.unlockPool(p)
	spans, undo, err := e.take(ctx, p, req.Count)
	if err != nil {
		return numberd.Allocation{}, err
	}
	stored := e.opts.Now()
	err = e.store.PutIdempotency(ctx, store.IdempotencyRecord{
		Pool: p.id, Scope: key.Scope, Key: key.Key, Fingerprint: req.Fingerprint(),
		Answer: alloc.EncodeSpans(spans), CreatedAt: stored, ExpiresAt: stored.Add(numberd.IdempotencyTTL),
	})
	if err != nil {
		// p.mu has been held since take: no other allocation moved these cursors.
		undo()
		return numberd.Allocation{}, err
	}
	return numberd.Allocation{Pool: p.id, Spans: spans}, nil
}

// take takes count numbers off p, waiting for a reservation when the reserved ones
// do not cover them. It is called and returns with p.mu held; undo gives the numbers
// back while p.mu is still held.
func (e *Engine) take(ctx context.Context, p *pool, count int) (spans []segment.Range, undo func(), err error) {
	for {
		if e.closed.Load() {
			return nil, nil, numberd.ErrClosed
		}
		if err := e.expire(ctx, p); err != nil {
			return nil, nil, err
		}
		plan, ok := p.plan(count)
		if !ok {
			e.opts.Observe(p.id, p.available())
			return nil, nil, fmt.Errorf("%w: pool %s has %d numbers left, %d asked", numberd.ErrExhausted, p.id, p.available(), count)
		}
		if plan.reserved() {
			undo := p.commit(plan)
			e.reserveIfLow(p)
			e.opts.Observe(p.id, p.available())
			return plan.spans(), undo, nil
		}
		ext := e.reserve(p, int64(count)+p.lease.Size)
		e.unlockPool(p)
		select {
		case <-ext.Done:
		case <-ctx.Done():
		}
		e.lockPool(p)
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if ext.Err != nil {
			return nil, nil, ext.Err
		}
	}
}

// piece is part of a planned allocation: suffixes lo..hi of one segment.
type piece struct {
	s      *alloc.SegmentState
	lo, hi int64
}

type plan []piece

func (pl plan) reserved() bool {
	for _, pc := range pl {
		if pc.hi > pc.s.ReservedHi {
			return false
		}
	}
	return true
}

func (pl plan) spans() []segment.Range {
	spans := make([]segment.Range, len(pl))
	for i, pc := range pl {
		spans[i] = pc.s.Meta.Range
		spans[i].Lo, spans[i].Hi = pc.lo, pc.hi
	}
	return spans
}

// plan picks the next count numbers of p, across segments in order, and reports
// false if p has fewer.
func (p *pool) plan(count int) (plan, bool) {
	var pl plan
	need := int64(count)
	for _, s := range p.Segs[p.Head:] {
		if !s.Open() {
			continue
		}
		n := min(need, s.Meta.Range.Hi-s.Next+1)
		pl = append(pl, piece{s: s, lo: s.Next, hi: s.Next + n - 1})
		if need -= n; need == 0 {
			return pl, true
		}
	}
	return nil, false
}

func (p *pool) commit(pl plan) (undo func()) {
	for _, pc := range pl {
		pc.s.Next = pc.hi + 1
	}
	head := p.Head
	p.AdvanceHead()
	return func() {
		for _, pc := range pl {
			pc.s.Next = pc.lo
		}
		p.Head = head
	}
}

func (p *pool) available() int64 {
	var n int64
	for _, s := range p.Segs[p.Head:] {
		if s.Open() {
			n = alloc.AddSat(n, s.Meta.Range.Hi-s.Next+1)
		}
	}
	return n
}

// reservedAhead counts the reserved, unissued numbers of p, up to limit.
func (p *pool) reservedAhead(limit int64) int64 {
	var n int64
	for _, s := range p.Segs[p.Head:] {
		if s.Open() && s.ReservedHi >= s.Next {
			if n += s.ReservedHi - s.Next + 1; n >= limit {
				break
			}
		}
	}
	return n
}

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
		err := e.store.Reserve(ctx, rs, cs)
		cancel()
		e.lockPool(p)
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
		e.unlockPool(p)
		if err != nil {
			e.opts.Metrics.Reservations.WithLabelValues("error").Inc()
			e.opts.Logger.Error("reserving numbers failed", "pool", p.id, "err", err)
			return
		}
		e.opts.Metrics.Reservations.WithLabelValues("ok").Inc()
	}()
	return ext
}

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
	if _, err := e.store.CloseSegment(ctx, s.Meta.ID, state, s.Next, gap); err != nil {
		return err
	}
	s.Meta.State = state
	if gap != nil {
		e.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(gap.Count()))
		e.opts.Logger.Info("segment closed", "pool", p.id, "segment", s.Meta.ID, "state", state, "gap_count", gap.Count())
	}
	return nil
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
		e.lockPool(p)
		e.unlockPool(p)
	}
	e.wg.Wait()
	return e.checkpoint(ctx, true)
}

// checkpoint writes the cursors that moved since the last checkpoint; with release
// it also lowers the high-water marks to them.
func (e *Engine) checkpoint(ctx context.Context, release bool) error {
	var errs []error
	for _, p := range e.pools.All() {
		e.lockPool(p)
		var cs []store.Cursor
		for _, s := range p.Segs {
			if p.saved[s.Meta.ID] != s.Next || (release && s.ReservedHi >= s.Next) {
				cs = append(cs, store.Cursor{SegmentID: s.Meta.ID, Next: s.Next})
			}
		}
		e.unlockPool(p)
		if len(cs) == 0 {
			continue
		}
		var err error
		if release {
			err = e.store.ReleaseReservations(ctx, cs)
		} else {
			err = e.store.SaveCursors(ctx, cs)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", p.id, err))
			continue
		}
		e.lockPool(p)
		for _, c := range cs {
			p.saved[c.SegmentID] = c.Next
		}
		e.unlockPool(p)
	}
	return errors.Join(errs...)
}

// janitor checkpoints cursors and purges expired idempotency records until Close.
func (e *Engine) janitor() {
	defer e.wg.Done()
	tick := time.NewTicker(e.opts.CheckpointEvery)
	defer tick.Stop()
	lastPurge := e.opts.Now()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		if err := e.checkpoint(ctx, false); err != nil {
			e.opts.Logger.Warn("checkpoint failed", "err", err)
		}
		if now := e.opts.Now(); now.Sub(lastPurge) >= 10*time.Minute {
			lastPurge = now
			if n, err := e.store.PurgeIdempotency(ctx); err != nil {
				e.opts.Logger.Warn("purging idempotency records failed", "err", err)
			} else if n > 0 {
				e.opts.Logger.Info("purged expired idempotency records", "count", n)
			}
		}
		cancel()
	}
}
