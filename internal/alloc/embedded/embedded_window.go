package embedded

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
)

// window is what allocation may take from a pool without its mutex: the reserved,
// unissued numbers of the pool's first open segment. With every allocation under
// the mutex, a holder descheduled on a busy machine held up every request behind
// it, and the waiters were then handed the mutex one by one: stalls of tens of
// milliseconds. Whoever unlocks a pool publishes a window and whoever locks it
// takes the window back first, so code under p.mu sees every cursor as a plain
// field, as if the window had never been there.
//
// Taking a window back swaps its cursor for sealed: a caller that loaded the
// window before then fails its compare-and-swap and goes the locked way, so each
// number is taken either before the seal, and counted in the cursor the lock
// holder reads, or not at all.
type window struct {
	cursor atomic.Int64 // the next number to hand out, or sealed
	s      *alloc.SegmentState
	rng    segment.Range // s.meta.Range, for the answers
	limit  int64         // the last number the window hands out: reserved, in s
	kickAt int64         // a caller moving the cursor past it starts a reservation
	expiry int64         // unix nanos from which a segment of the pool has expired
	rest   int64         // the pool's numbers after s, for Observe
}

const sealed = math.MaxInt64

// lock locks p and takes its window back.
func (p *pool) lock() {
	p.mu.Lock()
	if w := p.window.Swap(nil); w != nil {
		w.s.Next = w.cursor.Swap(sealed)
		p.AdvanceHead()
	}
}

// unlock publishes a window of p, when p has reserved numbers to hand out
// and the engine is open, and unlocks p.
func (p *pool) unlock() {
	p.publish()
	p.mu.Unlock()
}

func (p *pool) publish() {
	s := p.Active()
	if p.closed.Load() || s == nil || s.ReservedHi < s.Next {
		return
	}
	w := &window{s: s, rng: s.Meta.Range, limit: min(s.ReservedHi, s.Meta.Range.Hi), kickAt: sealed, expiry: math.MaxInt64}
	if !p.nextExpiry.IsZero() {
		w.expiry = p.nextExpiry.UnixNano()
	}
	available := p.available()
	w.rest = available - (s.Meta.Range.Hi - s.Next + 1)
	if reserved := p.reservedAhead(math.MaxInt64); p.extension == nil && reserved < available {
		// take reserves when fewer than half a lease are left reserved: the
		// cursor at which that happens, or the next number if it has. A pool
		// reserved to its end has nothing to reserve: no kick, or every take
		// of its last numbers would lock the pool.
		restReserved := reserved - (w.limit - s.Next + 1)
		w.kickAt = max(s.Next, w.limit+1+restReserved-p.lease.Size/2)
	}
	w.cursor.Store(s.Next)
	p.window.Store(w)
}

// takeFast takes count numbers off p's window, if it is published, still
// current at now and holds them; it reports false otherwise.
func (e *Engine) takeFast(p *pool, count int64, now time.Time) (segment.Range, bool) {
	w := p.window.Load()
	if w == nil || now.UnixNano() >= w.expiry || e.closed.Load() {
		return segment.Range{}, false
	}
	for {
		c := w.cursor.Load()
		if c > w.limit-count+1 { // a sealed cursor is above every limit
			return segment.Range{}, false
		}
		if !w.cursor.CompareAndSwap(c, c+count) {
			continue
		}
		if c <= w.kickAt && c+count > w.kickAt {
			p.lock()
			e.reserveIfLow(p)
			p.unlock()
		}
		e.opts.Observe(p.id, alloc.AddSat(w.rng.Hi-(c+count)+1, w.rest))
		r := w.rng
		r.Lo, r.Hi = c, c+count-1
		return r, true
	}
}
