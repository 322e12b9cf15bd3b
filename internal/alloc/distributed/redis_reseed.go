package distributed

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// reseed reseeds p's Redis state from the store because an allocate call found
// it unusable (why, as allocate.lua says; stale: the state's generation, or -1),
// unless another node reseeded it while this one waited for the lock.
func (ls *leaser) reseed(ctx context.Context, p *rpool, why string, stale int64) error {
	unlock, m, cfg, segs, view, err := ls.lockAndLoad(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	usable := view.ok && view.gen == cfg.Epoch && why != "behind" && !m.behind(view)
	if usable && view.gen != stale {
		return nil
	}
	return ls.reseedLocked(ctx, p, cfg, segs, view, usable, why)
}

// reseedLocked starts a new generation of p's state, from the store's config and
// segments segs and Redis's view of them as read under p's lock: the store skips
// every open segment to above the highest mark anyone observed (its high-water
// mark, what Redis shows, what this node saw), recording the skipped numbers as
// recovery gaps, and Redis is seeded with the result and no lease.
//
// The store moves first (invariant 2), and the state it replaces hands out
// numbers below its lease until seed.lua replaces it. usable says that view is of
// a state nothing shows older than what went out (this server's, of the store's
// generation, of one moment, not behind): then seed.lua's report of how far that
// state went when it was replaced narrows the gaps to start above it and above
// what this node saw, instead of at the store's checkpoint. The gaps are recorded
// wide before and narrowed after, so that a node that dies in between leaves
// numbers in a gap too many, never one too few. Of a state lost, foreign, partial
// or behind nothing says where it stopped: its gaps stay from the best known mark.
func (ls *leaser) reseedLocked(ctx context.Context, p *rpool, cfg numberd.Pool, segs []numberd.Segment, view redisView, usable bool, cause string) error {
	floors := map[int64]int64{}
	var behindStore []int64 // segments some mark shows above the store's high-water mark
	for _, s := range segs {
		if s.State != numberd.SegmentOpen {
			continue
		}
		used := p.seenUsed(s.ID)
		if rv := view.segs[s.ID]; rv.present {
			used = max(used, rv.used, rv.lease)
		}
		if used == 0 {
			continue
		}
		floors[s.ID] = s.Range.Lo + used
		if s.Range.Lo+used > s.ReservedHi+1 {
			behindStore = append(behindStore, s.ID)
		}
	}
	next, segs, gaps, err := ls.store.gens.Reseed(ctx, p.id, cfg.Epoch, max(view.gen, p.floor().gen)+1, floors)
	if errors.Is(err, store.ErrConflict) {
		return nil // another node reseeded; the caller's retry meets its state
	}
	if err != nil {
		return err
	}
	p.seen(next)
	p.learn(segs...)
	args := []any{next, 0}
	for _, s := range segs {
		if s.State != numberd.SegmentOpen || s.Next > s.Range.Hi {
			continue
		}
		args = append(args, s.ID, s.Range.Size(), s.Next-s.Range.Lo, expiryMillis(s.ExpiresAt))
		args[1] = args[1].(int) + 1
	}
	text, err := scripts.seed.Run(ctx, ls.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	if err != nil {
		// The store moved on. Either Redis keeps an older state that can get no
		// lease, and the next call reseeds again; or the seed ran and its reply
		// was lost, and the resolver reads its report back from the new state to
		// narrow the gaps, as the reply would have.
		if usable && len(gaps) > 0 {
			ls.unsure.add(unsettledCall{pool: p, seeded: &lostSeed{gen: next, view: view, segs: segs, gaps: gaps, seen: p.seenUsedOf(gaps)}, since: time.Now()})
		}
		return redisErr(err)
	}
	reply, err := parseSeedReply(text)
	if err != nil {
		// The seed ran; only its report is unread: the gaps stay as recorded.
		ls.opts.Logger.Warn("seed.lua's report unread; the recovery gaps stay as wide as recorded", "pool", p.id, "err", err)
	}
	if reply.newer {
		// Another node's later seed is in place: the caller's retry meets it.
		if err == nil {
			p.seen(reply.newerGen)
		}
		return nil
	}
	if usable {
		gaps = ls.narrow(ctx, p, view, reply.replaced, segs, gaps)
	}
	ls.opts.Metrics.RedisCalls.WithLabelValues("seed").Inc()
	ls.opts.Metrics.Reseeds.WithLabelValues(p.id, strings.Fields(cause)[0]).Inc()
	var skipped int64
	for _, g := range gaps {
		skipped += g.Count()
		ls.opts.Metrics.GapNumbers.WithLabelValues(p.id, numberd.GapRecovery).Add(float64(g.Count()))
	}
	switch {
	case len(behindStore) > 0:
		ls.opts.Metrics.Rollbacks.WithLabelValues(p.id, ls.store.ready.Name()).Inc()
		ls.opts.Logger.Error("the store's high-water mark is below numbers Redis or this node saw handed out: the store went back in time; resumed above them",
			"pool", p.id, "segments", behindStore, "generation", next, "gaps", len(gaps), "skipped", skipped)
	case cause == "behind":
		ls.opts.Metrics.Rollbacks.WithLabelValues(p.id, "redis").Inc()
		ls.opts.Logger.Error("the pool's Redis state is older than one this node saw, or than the store's checkpoint of it: Redis went back in time; reseeded from the store",
			"pool", p.id, "generation", next, "gaps", len(gaps), "skipped", skipped)
	case cause == "lost" && len(gaps) == 0:
		// A new pool's first allocation, or a pool reseeded with nothing out.
		ls.opts.Logger.Debug("pool's Redis state seeded from the store", "pool", p.id, "generation", next)
	default:
		ls.opts.Logger.Warn("pool's Redis state reseeded from the store", "pool", p.id, "generation", next, "cause", cause, "gaps", len(gaps), "skipped", skipped)
	}
	return nil
}

// narrow trims gaps, recorded by the reseed that seed.lua's reply answers, to
// start where the state it replaced, of which view was read, stopped handing out,
// or above what this node saw used of it, if higher. segs are the pool's segments.
// It returns the gaps as they are now. A trim the store fails to apply goes to the
// resolver, which retries it.
//
// Below where the state stopped, every number went to a caller, or to a call
// whose answer was lost, which the resolver records as abandoned. One settled in
// the moment between the store's reseed and the trim found its numbers inside
// the wide gap, recorded nothing, and after the trim lies in no gap: the price of
// a gap that survives a crash, and a window of one Redis round trip.
func (ls *leaser) narrow(ctx context.Context, p *rpool, view redisView, replaced *replacedState, segs []numberd.Segment, gaps []numberd.Gap) []numberd.Gap {
	trims, ts := trimsOf(replaced, view, segs, gaps, p.seenUsedOf(gaps))
	if len(ts) == 0 {
		return gaps
	}
	if err := ls.store.gens.TrimRecovery(ctx, p.id, ts); err != nil {
		ls.opts.Logger.Warn("narrowing a recovery gap failed; the resolver retries", "pool", p.id, "err", err)
		ls.unsure.add(unsettledCall{pool: p, trims: ts, since: time.Now()})
	}
	var left []numberd.Gap
	for _, g := range gaps {
		if t, ok := trims[g.SegmentID]; ok {
			g.Range.Lo = max(g.Range.Lo, t.From)
		}
		if g.Range.Lo <= g.Range.Hi {
			left = append(left, g)
		}
	}
	return left
}

// trimsOf is how seed.lua's report of the state it replaced narrows gaps: per segment, and as the store
// applies them, in order. seen is what the node saw used of each segment before
// the new state could hand any out.
func trimsOf(replaced *replacedState, view redisView, segs []numberd.Segment, gaps []numberd.Gap, seen map[int64]int64) (map[int64]store.Trim, []store.Trim) {
	final, ok := replaced.final(view)
	if !ok {
		return nil, nil
	}
	first := map[int64]int64{}
	for _, s := range segs {
		first[s.ID] = s.Range.Lo
	}
	trims := map[int64]store.Trim{}
	var order []int64
	for _, g := range gaps {
		used, ok := final[g.SegmentID]
		if !ok {
			continue // the replaced state had none of it: nothing tells how far it went
		}
		t, known := trims[g.SegmentID]
		if !known {
			t = store.Trim{SegmentID: g.SegmentID, Lo: g.Range.Lo, Hi: g.Range.Hi, From: first[g.SegmentID] + max(used, seen[g.SegmentID])}
			order = append(order, g.SegmentID)
		}
		t.Lo, t.Hi = min(t.Lo, g.Range.Lo), max(t.Hi, g.Range.Hi)
		trims[g.SegmentID] = t
	}
	var ts []store.Trim
	for _, id := range order {
		if t := trims[id]; t.From > t.Lo {
			ts = append(ts, t)
		}
	}
	return trims, ts
}

// lostSeed is a reseed whose seed.lua reply was lost: what narrowing its gaps
// needs once the report is read back from the state it seeded.
type lostSeed struct {
	gen  int64
	view redisView
	segs []numberd.Segment
	gaps []numberd.Gap
	seen map[int64]int64
}

// errSeedPending says the state a lost seed was to replace is still in place:
// the seed may yet run, or the next reseed replaces that state instead.
var errSeedPending = errors.New("alloc: the state a lost seed was to replace is still in place")

// final is, per segment, the numbers the replaced state had used when it was
// replaced. It reports false unless that state is the one view showed or a
// later version of it, and went back in no segment: only then did its
// allocation end there. Of no usable state (nil) it reports false.
func (rs *replacedState) final(view redisView) (map[int64]int64, bool) {
	if rs == nil || rs.gen != view.gen || rs.ver < view.ver {
		return nil, false
	}
	for id, s := range view.segs {
		if used, ok := rs.used[id]; s.present && (!ok || used < s.used) {
			return nil, false
		}
	}
	return rs.used, true
}
