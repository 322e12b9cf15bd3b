package distributed

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
)

// What a node knows of how far a pool went: the states it saw, the numbers it
// saw used, and the store's checkpoints of them; and what it does with an answer
// or a state below that.

// saw records a state of p that an answer came from, and the numbers it handed out.
func (p *rpool) saw(m stateMark, runs []offsetRun) {
	p.markMu.Lock()
	if p.mark.before(m) {
		p.mark = m
	}
	for _, r := range runs {
		if r.to+1 > p.cursors[r.seg] {
			p.cursors[r.seg] = r.to + 1
		}
	}
	p.markMu.Unlock()
}

// startsBelow reports, for answers of a state of generation gen that hand out
// runs, whether one of them starts below what was handed out already of its
// segment: the state went back in time (keys restored from a dump) and
// allocate.lua could not tell, as it knows only the versions this node saw. It
// returns nil if none does, or else per segment the floor it found.
func (p *rpool) startsBelow(gen int64, runs []offsetRun) map[int64]int64 {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	var floors map[int64]int64
	for _, r := range runs {
		if f := p.usedFloorLocked(gen, r.seg); r.from < f {
			if floors == nil {
				floors = map[int64]int64{}
			}
			floors[r.seg] = f
		}
	}
	return floors
}

// usedBelow is startsBelow for an answer that replayed requests, given how many
// numbers of each open segment its state has used: a replay's numbers lie below
// what was handed out by nature, but the state itself must not.
func (p *rpool) usedBelow(gen int64, used map[int64]int64) map[int64]int64 {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	var floors map[int64]int64
	for id, n := range used {
		if f := p.usedFloorLocked(gen, id); n < f {
			if floors == nil {
				floors = map[int64]int64{}
			}
			floors[id] = f
		}
	}
	return floors
}

// usedFloorLocked is how many numbers of segment id a state of generation gen has
// used at least, unless it went back in time: what this node saw used, and what
// the store's checkpoint holds if gen is not older than the checkpoint's.
func (p *rpool) usedFloorLocked(gen, id int64) int64 {
	used := p.cursors[id]
	if gen >= p.ckGen {
		used = max(used, p.ckpt[id])
	}
	return used
}

// floor is the oldest state of p an allocate call may use: no older generation
// than the store's newest this node knows, nor an older version than it saw.
func (p *rpool) floor() stateMark {
	p.markMu.Lock()
	m := p.mark
	p.markMu.Unlock()
	if g := p.gen.Load(); g > m.gen {
		return stateMark{gen: g}
	}
	return m
}

// marks is what a node knows was handed out of one pool, as of one moment.
type marks struct {
	state stateMark
	seen  map[int64]int64 // rpool.cursors
	ckGen int64
	ckpt  map[int64]int64
}

// marks takes a copy of what p knows was handed out. A view read after it may be
// older than answers that came later, but never older than this.
func (p *rpool) marks() marks {
	m := marks{state: p.floor()}
	p.markMu.Lock()
	m.seen, m.ckGen, m.ckpt = maps.Clone(p.cursors), p.ckGen, maps.Clone(p.ckpt)
	p.markMu.Unlock()
	return m
}

// behind reports whether view is of a state older than what m knows was handed
// out: an older version than one seen, or a segment in use with fewer numbers
// used than this node saw, or than the store's checkpoint of its generation.
func (m marks) behind(view redisView) bool {
	if view.behind(m.state) {
		return true
	}
	for id, s := range view.segs {
		if !s.present || s.state != "" {
			continue
		}
		floor := m.seen[id]
		if view.gen >= m.ckGen {
			floor = max(floor, m.ckpt[id])
		}
		if s.used < floor {
			return true
		}
	}
	return false
}

// Floors older than three checkpoint passes (the node was paused, or the store
// away) are read again before a request uses them, at most every floorRetry,
// each read waiting floorReadTimeout at most: a node back from a pause must not
// serve a state restored meanwhile that the others' checkpoints already refute.
// That read is only the node's own guess, by its own clock; allocate.lua decides,
// by Redis's, from floorsAt (see maxFloorAge), and answers STALE, handing out
// nothing, when the floors are older: the request then reads them within its
// own deadline, or fails with nothing consumed.
const (
	floorRetry       = time.Second
	floorReadTimeout = 200 * time.Millisecond
)

// floorReader reads the store's floors of the pools again when they grow old.
type floorReader struct {
	rdb   RedisClient
	store stores
	opts  *alloc.Options
}

// maxFloorAge is how old, by Redis's clock, the floors an allocate call brings
// may be: three checkpoint passes, which read them every CheckpointEvery, and
// never less than minFloorAge, so that a short pass does not turn a busy moment
// of the store into refusals.
func (fr *floorReader) maxFloorAge() time.Duration {
	return max(3*fr.opts.CheckpointEvery, minFloorAge)
}

const minFloorAge = 3 * time.Second

func (fr *floorReader) floorsStale(p *rpool) bool {
	return time.Since(time.Unix(0, p.learnedAt.Load())) > fr.maxFloorAge()
}

// refreshFloors reads p's floors again if they look stale and no read failed in
// the last floorRetry, waiting floorReadTimeout at most; allocate.lua has the
// last word.
func (fr *floorReader) refreshFloors(ctx context.Context, p *rpool) {
	if !fr.floorsStale(p) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, floorReadTimeout)
	defer cancel()
	if err := fr.readFloors(rctx, p, false); err != nil {
		fr.opts.Logger.Debug("stale floors not read again", "pool", p.id, "err", err)
	}
}

// errFloorsUnread says a pool's floors could not be read lately: a request
// answered STALE fails at once, with nothing consumed, rather than each one
// waiting on a store that does not answer.
var errFloorsUnread = fmt.Errorf("%w: the checkpoints that guard against a restored Redis state could not be read lately", numberd.ErrUnavailable)

// readFloors reads p's floors from the store, stamped with the Redis time read
// before them. Unforced (a node's own guess that they are stale), it tries once
// every floorRetry. Forced (an allocate call answered STALE), it reads unless
// they were read a moment ago, and fails at once if a forced read failed within
// floorRetry, so that requests do not queue on a store that does not answer.
func (fr *floorReader) readFloors(ctx context.Context, p *rpool, force bool) error {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	now := time.Now().UnixNano()
	switch {
	case force && now-p.stampedAt.Load() < int64(floorReadTimeout):
		return nil // read meanwhile, by the checkpoint pass or another request
	case force && p.triedFailed && now-p.triedAt < int64(floorRetry):
		return errFloorsUnread
	case !force && (!fr.floorsStale(p) || now-p.triedAt < int64(floorRetry)):
		return nil
	}
	p.triedAt, p.triedFailed = now, force
	at, err := fr.rdb.Time(ctx).Result()
	if err != nil {
		return redisErr(err)
	}
	segs, err := fr.store.segments.OpenSegments(ctx, []string{p.id})
	if err != nil {
		return err
	}
	p.triedFailed = false
	p.learn(segs[p.id]...)
	p.stampFloors(at.UnixMilli())
	return nil
}

// stampFloors records that p's floors were read after Redis time ms, unless a
// later read was recorded already.
func (p *rpool) stampFloors(ms int64) {
	for {
		old := p.floorsAt.Load()
		if ms <= old {
			return
		}
		if p.floorsAt.CompareAndSwap(old, ms) {
			p.stampedAt.Store(time.Now().UnixNano())
			return
		}
	}
}

// learn takes in segments read from the store: for turning offsets into numbers,
// and their checkpointed cursors as floors of what their generation's states, and
// later ones, have used.
func (p *rpool) learn(segs ...numberd.Segment) {
	p.learnedAt.Store(time.Now().UnixNano())
	p.remember(segs...)
	p.markMu.Lock()
	defer p.markMu.Unlock()
	for _, s := range segs {
		p.seen(s.Epoch)
		p.ckGen = max(p.ckGen, s.Epoch)
		if used := s.Next - s.Range.Lo; used > p.ckpt[s.ID] {
			p.ckpt[s.ID] = used
		}
	}
}

// seenUsedOf is seenUsed of each segment gaps are of.
func (p *rpool) seenUsedOf(gaps []numberd.Gap) map[int64]int64 {
	out := make(map[int64]int64, len(gaps))
	for _, g := range gaps {
		out[g.SegmentID] = p.seenUsed(g.SegmentID)
	}
	return out
}

// seenUsed is how many numbers of segment id this node saw used, at least.
func (p *rpool) seenUsed(id int64) int64 {
	p.markMu.Lock()
	defer p.markMu.Unlock()
	return p.cursors[id]
}
