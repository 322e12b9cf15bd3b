package embedded

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
)

// pool is one pool's live state. mu guards every field but cfg's immutable Digits
// and window, and is taken and given back by lock and unlock, never alone
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

	// closed is the engine's flag: a closed engine publishes no window, so
	// every allocation goes the locked way and sees ErrClosed.
	closed *atomic.Bool
}

func newPool(cfg numberd.Pool, opts alloc.Options, closed *atomic.Bool) *pool {
	return &pool{id: cfg.ID, PoolView: alloc.PoolView{Cfg: cfg}, lease: alloc.NewLease(opts), saved: map[int64]int64{}, closed: closed}
}

func (p *pool) refreshExpiry() {
	p.nextExpiry = time.Time{}
	for _, s := range p.Segs[p.Head:] {
		if exp := s.Meta.ExpiresAt; s.Open() && !exp.IsZero() && (p.nextExpiry.IsZero() || exp.Before(p.nextExpiry)) {
			p.nextExpiry = exp
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
