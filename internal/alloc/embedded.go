package alloc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// Options tune an engine. The zero value of each field takes its default.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Now is the engine's clock: it decides segment expiry and idempotency record
	// lifetimes. In embedded mode the one node's clock is the store's.
	Now func() time.Time
	// LeaseMin and LeaseMax bound how many numbers a pool reserves ahead of need
	// (defaults 100 and 5000, what the tax platform grants in one download at
	// most): a crash, or a lost Redis, strands at most one lease per pool.
	LeaseMin, LeaseMax int64
	// LeaseHorizon is how long a lease should last at the pool's pace (default 2s).
	LeaseHorizon time.Duration
	// CheckpointEvery is how often cursors are written to the store, which narrows
	// the recovery gap of a crash (default 10s; 1s in distributed mode, where the
	// checkpoint is also how nodes learn how far the others went).
	CheckpointEvery time.Duration
	// StoreTimeout bounds one background store operation (default 3s), which a
	// request may be waiting for: a store that hangs answers 503 before the
	// request's own deadline.
	StoreTimeout time.Duration
	// RequestTimeout bounds an allocation request from its start to its answer
	// (default 5s), whatever it waits for: Redis, a lease extension, a reseed.
	RequestTimeout time.Duration
	// Observe, if set, hears after each allocation how many numbers its pool has
	// left: the refill worker's signal. It must be quick.
	Observe func(pool string, available int64)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LeaseMin <= 0 {
		o.LeaseMin = 100
	}
	if o.LeaseMax < o.LeaseMin {
		o.LeaseMax = max(5_000, o.LeaseMin)
	}
	if o.LeaseHorizon <= 0 {
		o.LeaseHorizon = 2 * time.Second
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 10 * time.Second
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 3 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Observe == nil {
		o.Observe = func(string, int64) {}
	}
	return o
}

// Embedded is the in-process engine of embedded mode. It is the only writer of its
// store (OpenSQLite locks the data directory), so it keeps every pool's live state
// in memory and writes to the store only to reserve numbers ahead of need, to record
// gaps and closed segments, and to checkpoint.
type Embedded struct {
	store *store.Store
	opts  Options

	pools  registry[*pool]
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup // background reservations and the janitor
}

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

	cfg  numberd.Pool
	segs []*seg // in allocation order, closed ones included
	head int    // index of the first segment that may still be open

	nextExpiry time.Time  // earliest expires_at of an open segment, zero if none
	extension  *extension // the reservation in flight, if any
	lease      lease
	saved      map[int64]int64 // cursors as last written to the store
}

type seg struct {
	meta       numberd.Segment // as loaded; State tracks closes
	next       int64
	reservedHi int64
	recovered  int64 // numbers of this segment in recovery gaps
}

func (s *seg) open() bool { return s.meta.State == numberd.SegmentOpen && s.next <= s.meta.Range.Hi }

type extension struct {
	done chan struct{}
	err  error
}

// OpenEmbedded loads every pool's state from st and resumes allocation. A segment
// whose high-water mark is above its checkpointed cursor was reserved by a process
// that did not stop cleanly: its numbers up to the mark may have been handed out, so
// allocation resumes above the mark and the range is recorded as a recovery gap.
func OpenEmbedded(ctx context.Context, st *store.Store, opts Options) (*Embedded, error) {
	e := &Embedded{store: st, opts: opts.withDefaults(), stop: make(chan struct{})}
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
	e.pools.init(pools)
	e.opts.Metrics.WatchPools(e.gauges)
	e.wg.Add(1)
	go e.janitor()
	return e, nil
}

func (e *Embedded) newPool(cfg numberd.Pool) *pool {
	return &pool{id: cfg.ID, cfg: cfg, lease: newLease(e.opts), saved: map[int64]int64{}}
}

func (e *Embedded) loadPool(ctx context.Context, cfg numberd.Pool) (*pool, error) {
	p := e.newPool(cfg)
	metas, err := e.store.Segments(ctx, cfg.ID)
	if err != nil {
		return nil, err
	}
	gaps, err := e.store.Gaps(ctx, cfg.ID)
	if err != nil {
		return nil, err
	}
	recovered := map[int64]int64{}
	for _, g := range gaps {
		if g.Reason == numberd.GapRecovery {
			recovered[g.SegmentID] += g.Count()
		}
	}
	for _, m := range metas {
		s := &seg{meta: m, next: m.Next, reservedHi: m.ReservedHi, recovered: recovered[m.ID]}
		if m.State == numberd.SegmentOpen && m.ReservedHi >= m.Next {
			if err := e.recover(ctx, p, s); err != nil {
				return nil, err
			}
		}
		p.segs = append(p.segs, s)
		p.saved[m.ID] = s.next
	}
	p.advanceHead()
	p.refreshExpiry()
	return p, nil
}

// recover moves s's cursor above its high-water mark after an unclean stop. The gap
// is written before the cursor, and a gap recorded twice is kept once, so a crash
// here repeats safely.
func (e *Embedded) recover(ctx context.Context, p *pool, s *seg) error {
	gap := numberd.Gap{Pool: p.id, SegmentID: s.meta.ID, Range: s.meta.Range, Reason: numberd.GapRecovery}
	gap.Range.Lo, gap.Range.Hi = s.next, s.reservedHi
	if err := e.store.AddGap(ctx, gap); err != nil {
		return err
	}
	if err := e.store.SaveCursors(ctx, []store.Cursor{{SegmentID: s.meta.ID, Next: s.reservedHi + 1}}); err != nil {
		return err
	}
	e.opts.Logger.Warn("resumed above the durable high-water mark after an unclean stop",
		"pool", p.id, "segment", s.meta.ID, "gap_start", gap.Range.Start(), "gap_end", gap.Range.End(), "gap_count", gap.Count())
	e.opts.Metrics.GapNumbers.WithLabelValues(p.id, numberd.GapRecovery).Add(float64(gap.Count()))
	s.recovered += gap.Count()
	s.next = s.reservedHi + 1
	return nil
}

func (p *pool) advanceHead() {
	for p.head < len(p.segs) && !p.segs[p.head].open() {
		p.head++
	}
}

func (p *pool) refreshExpiry() {
	p.nextExpiry = time.Time{}
	for _, s := range p.segs[p.head:] {
		if exp := s.meta.ExpiresAt; s.open() && !exp.IsZero() && (p.nextExpiry.IsZero() || exp.Before(p.nextExpiry)) {
			p.nextExpiry = exp
		}
	}
}

func (e *Embedded) pool(id string) (*pool, error) {
	p, ok := e.pools.get(id)
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
func (e *Embedded) Allocate(ctx context.Context, req numberd.Request) (numberd.Allocation, error) {
	start := e.opts.Now()
	a, err := e.allocate(ctx, req, start)
	observe(e.opts.Metrics, req.Pool, a, err, e.opts.Now().Sub(start))
	return a, err
}

// observe records an allocation's outcome and duration.
func observe(m *metrics.Metrics, poolID string, a numberd.Allocation, err error, took time.Duration) {
	m.AllocationSeconds.Observe(took.Seconds())
	outcome := "ok"
	switch {
	case errors.Is(err, numberd.ErrPoolNotFound), errors.Is(err, numberd.ErrInvalid):
		return // not a pool's event: unknown ids must not grow the label set
	case errors.Is(err, numberd.ErrExhausted):
		outcome = "exhausted"
	case err != nil:
		outcome = "error"
	case a.Replayed:
		outcome = "replayed"
	default:
		c := poolCountersOf(m, poolID)
		c.numbers.Add(float64(a.Count()))
		c.ok.Inc()
		return
	}
	m.Allocations.WithLabelValues(poolID, outcome).Inc()
}

// poolCounters are a pool's counters of successful allocations, looked up once:
// label lookups on every allocation showed in the profile.
type poolCounters struct {
	ok, numbers prometheus.Counter
}

var counterCache sync.Map // struct{*metrics.Metrics; string} → *poolCounters

func poolCountersOf(m *metrics.Metrics, pool string) *poolCounters {
	key := struct {
		m    *metrics.Metrics
		pool string
	}{m, pool}
	if c, ok := counterCache.Load(key); ok {
		return c.(*poolCounters)
	}
	c, _ := counterCache.LoadOrStore(key, &poolCounters{ok: m.Allocations.WithLabelValues(pool, "ok"), numbers: m.Numbers.WithLabelValues(pool)})
	return c.(*poolCounters)
}

func (e *Embedded) allocate(ctx context.Context, req numberd.Request, now time.Time) (numberd.Allocation, error) {
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
		spans, err := decodeSpans(rec.Answer, p.cfg.Digits)
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
		Answer: encodeSpans(spans), CreatedAt: stored, ExpiresAt: stored.Add(numberd.IdempotencyTTL),
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
func (e *Embedded) take(ctx context.Context, p *pool, count int) (spans []segment.Range, undo func(), err error) {
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
		ext := e.reserve(p, int64(count)+p.lease.size)
		e.unlockPool(p)
		select {
		case <-ext.done:
		case <-ctx.Done():
		}
		e.lockPool(p)
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if ext.err != nil {
			return nil, nil, ext.err
		}
	}
}

// piece is part of a planned allocation: suffixes lo..hi of one segment.
type piece struct {
	s      *seg
	lo, hi int64
}

type plan []piece

func (pl plan) reserved() bool {
	for _, pc := range pl {
		if pc.hi > pc.s.reservedHi {
			return false
		}
	}
	return true
}

func (pl plan) spans() []segment.Range {
	spans := make([]segment.Range, len(pl))
	for i, pc := range pl {
		spans[i] = pc.s.meta.Range
		spans[i].Lo, spans[i].Hi = pc.lo, pc.hi
	}
	return spans
}

// plan picks the next count numbers of p, across segments in order, and reports
// false if p has fewer.
func (p *pool) plan(count int) (plan, bool) {
	var pl plan
	need := int64(count)
	for _, s := range p.segs[p.head:] {
		if !s.open() {
			continue
		}
		n := min(need, s.meta.Range.Hi-s.next+1)
		pl = append(pl, piece{s: s, lo: s.next, hi: s.next + n - 1})
		if need -= n; need == 0 {
			return pl, true
		}
	}
	return nil, false
}

func (p *pool) commit(pl plan) (undo func()) {
	for _, pc := range pl {
		pc.s.next = pc.hi + 1
	}
	head := p.head
	p.advanceHead()
	return func() {
		for _, pc := range pl {
			pc.s.next = pc.lo
		}
		p.head = head
	}
}

func (p *pool) available() int64 {
	var n int64
	for _, s := range p.segs[p.head:] {
		if s.open() {
			n = addSat(n, s.meta.Range.Hi-s.next+1)
		}
	}
	return n
}

// reservedAhead counts the reserved, unissued numbers of p, up to limit.
func (p *pool) reservedAhead(limit int64) int64 {
	var n int64
	for _, s := range p.segs[p.head:] {
		if s.open() && s.reservedHi >= s.next {
			if n += s.reservedHi - s.next + 1; n >= limit {
				break
			}
		}
	}
	return n
}

// reserveIfLow starts a reservation when fewer than half a lease of p's numbers
// are reserved ahead. Called with p.mu held.
func (e *Embedded) reserveIfLow(p *pool) {
	if p.reservedAhead(p.lease.size) < p.lease.size/2 {
		e.reserve(p, p.lease.size)
	}
}

// reserve makes sure a reservation covering the next need numbers of p is under way
// and returns it. At most one runs per pool; it writes to the store without p.mu, so
// allocation of already reserved numbers goes on meanwhile. Called with p.mu held.
func (e *Embedded) reserve(p *pool, need int64) *extension {
	if p.extension != nil {
		return p.extension
	}
	if e.closed.Load() {
		// Close has handed the reservations back, or is about to: a new one
		// would strand a lease as a recovery gap at the next start.
		ext := &extension{done: make(chan struct{}), err: numberd.ErrClosed}
		close(ext.done)
		return ext
	}
	p.lease.resize(e.opts)
	need = max(need, p.lease.size)
	type raise struct {
		s  *seg
		to int64
	}
	var raises []raise
	var rs []store.Reservation
	var cs []store.Cursor
	for _, s := range p.segs[p.head:] {
		if need <= 0 {
			break
		}
		if !s.open() {
			continue
		}
		if s.next > p.saved[s.meta.ID] {
			cs = append(cs, store.Cursor{SegmentID: s.meta.ID, Next: s.next})
		}
		to := s.next + min(need, s.meta.Range.Hi-s.next+1) - 1
		if to > s.reservedHi {
			raises = append(raises, raise{s, to})
			rs = append(rs, store.Reservation{SegmentID: s.meta.ID, From: s.reservedHi, To: to})
		}
		need -= to - s.next + 1
	}
	ext := &extension{done: make(chan struct{})}
	if len(rs) == 0 {
		close(ext.done)
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
				r.s.reservedHi = max(r.s.reservedHi, r.to)
			}
			for _, c := range cs {
				p.saved[c.SegmentID] = max(p.saved[c.SegmentID], c.Next)
			}
		}
		ext.err = err
		p.extension = nil
		close(ext.done)
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
func (e *Embedded) expire(ctx context.Context, p *pool) error {
	now := e.opts.Now()
	if p.nextExpiry.IsZero() || now.Before(p.nextExpiry) {
		return nil
	}
	for _, s := range p.segs[p.head:] {
		if s.open() && !s.meta.ExpiresAt.IsZero() && !now.Before(s.meta.ExpiresAt) {
			if err := e.close(ctx, p, s, numberd.SegmentExpired, numberd.GapExpired); err != nil {
				return err
			}
		}
	}
	p.advanceHead()
	p.refreshExpiry()
	return nil
}

// close moves open segment s to state, its unused numbers to a gap. Called with
// p.mu held.
func (e *Embedded) close(ctx context.Context, p *pool, s *seg, state, reason string) error {
	var gap *numberd.Gap
	if s.next <= s.meta.Range.Hi {
		gap = &numberd.Gap{Pool: p.id, SegmentID: s.meta.ID, Range: s.meta.Range, Reason: reason}
		gap.Range.Lo = s.next
	}
	if _, err := e.store.CloseSegment(ctx, s.meta.ID, state, s.next, gap); err != nil {
		return err
	}
	s.meta.State = state
	if gap != nil {
		e.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(gap.Count()))
		e.opts.Logger.Info("segment closed", "pool", p.id, "segment", s.meta.ID, "state", state, "gap_count", gap.Count())
	}
	return nil
}

// Close stops the engine: allocation ends, background work finishes, and the
// cursors are written with the unissued reservations handed back, so a restart
// resumes exactly where this process stopped.
func (e *Embedded) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	close(e.stop)
	// Reservations start under their pool's lock after a look at the flag: once
	// every pool has been locked, those that looked too early are counted in wg
	// and the rest will see the flag.
	for _, p := range e.pools.all() {
		e.lockPool(p)
		e.unlockPool(p)
	}
	e.wg.Wait()
	return e.checkpoint(ctx, true)
}

// checkpoint writes the cursors that moved since the last checkpoint; with release
// it also lowers the high-water marks to them.
func (e *Embedded) checkpoint(ctx context.Context, release bool) error {
	var errs []error
	for _, p := range e.pools.all() {
		e.lockPool(p)
		var cs []store.Cursor
		for _, s := range p.segs {
			if p.saved[s.meta.ID] != s.next || (release && s.reservedHi >= s.next) {
				cs = append(cs, store.Cursor{SegmentID: s.meta.ID, Next: s.next})
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
func (e *Embedded) janitor() {
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
