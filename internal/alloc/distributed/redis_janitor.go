package distributed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// sweep closes the segments that expired by Redis's clock: an allocate call that
// asks for nothing, and the store records what it reports.
func (ad *admin) sweep(ctx context.Context, p *rpool) error {
	keys, args := allocateArgs(p, ad.names.callID(), nil, 0)
	reply, err := scripts.allocate.Run(ctx, ad.rdb, keys, args...).Text()
	ad.opts.Metrics.RedisCalls.WithLabelValues("sweep").Inc()
	if err != nil {
		return redisErr(err)
	}
	return ad.swept(ctx, p, reply)
}

// sweepAll sweeps every pool of ps in one round trip.
func (ad *admin) sweepAll(ctx context.Context, ps []*rpool) error {
	calls := make([]scriptCall, len(ps))
	for i, p := range ps {
		calls[i].keys, calls[i].args = allocateArgs(p, ad.names.callID(), nil, 0)
	}
	replies, err := ad.pipe.pipelined(ctx, scripts.allocate, "sweep", calls)
	if err != nil {
		return err
	}
	for i, p := range ps {
		if err := ad.swept(ctx, p, replies[i]); err != nil {
			return err
		}
	}
	return nil
}

// swept records the segments a sweep of p found expired.
func (ad *admin) swept(ctx context.Context, p *rpool, text string) error {
	reply, err := parseAllocateReply(text, 0)
	if err != nil {
		return err
	}
	if reply.code != replyOK {
		return nil // no state to sweep: the reseed closes what expired
	}
	for _, ev := range reply.expired {
		if _, err := ad.closeSegment(ctx, p, reply.gen, ev.seg, ev.used, numberd.SegmentExpired, numberd.GapExpired); err != nil {
			return err
		}
	}
	return nil
}

// goClose records in the background that Redis's state of generation gen closed
// segment id with used numbers handed out: its state in the store, its unused
// numbers a gap.
func (ad *admin) goClose(p *rpool, gen, id, used int64, state, reason string) {
	ad.life.wg.Add(1)
	go func() {
		defer ad.life.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), ad.opts.StoreTimeout)
		defer cancel()
		if _, err := ad.closeSegment(ctx, p, gen, id, used, state, reason); err != nil {
			ad.opts.Logger.Warn("recording a closed segment failed; the checkpoint retries", "pool", p.id, "segment", id, "err", err)
		}
	}()
}

// closeSegment records in the store that the Redis state of generation gen closed
// segment id with used numbers handed out. It records nothing and reports stale if
// the pool was reseeded since: the segment, still open, went into the new
// generation, which reports its close again.
func (ad *admin) closeSegment(ctx context.Context, p *rpool, gen, id, used int64, state, reason string) (stale bool, err error) {
	seg, err := ad.pools.segment(ctx, p, id)
	if err != nil {
		return false, err
	}
	next := seg.Range.Lo + used
	var gap *numberd.Gap
	if next <= seg.Range.Hi {
		gap = &numberd.Gap{Pool: p.id, SegmentID: id, Range: seg.Range, Reason: reason}
		gap.Range.Lo = next
	}
	changed, err := ad.store.gens.CloseSegmentAt(ctx, p.id, gen, id, state, next, gap)
	if changed && gap != nil {
		ad.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(gap.Count()))
		ad.opts.Logger.Info("segment closed", "pool", p.id, "segment", id, "state", state, "gap_count", gap.Count())
	}
	if errors.Is(err, store.ErrConflict) {
		return true, nil
	}
	return false, err
}

// checkpoint shares, through the store, how far the pools this node knows went,
// in a fixed number of round trips however many pools that is: one query reads
// the open segments of every pool the node knows, which refreshes each pool's
// generation and the floors the checkpoints of every node set (see rpool.ckpt);
// then one pipeline reads Redis's cursors of the pools this node served lately,
// and one statement writes those that are ahead of the store's. That narrows the
// gap a lost Redis leaves, and lets every node refuse a state restored from keys
// older than what any node handed out one pass earlier. It also records the
// closes that Redis made and the store missed.
//
// What stays undetectable: keys of a pool restored, all of them, to a copy taken
// within the same lease and less than about two passes (the writer's and the
// reader's) before what was handed out since, then served by a node that saw no
// newer version of the state. Its version, generation, identity and lease all
// look right, and no durable mark is yet above it; only a write to the store per
// allocation would close that, which is what Redis is there to spare.
func (ad *admin) checkpoint(ctx context.Context) error {
	known := ad.pools.all()
	if len(known) == 0 {
		return nil
	}
	ids := make([]string, len(known))
	since := time.Now().Add(-3 * ad.opts.CheckpointEvery).UnixNano()
	var busy []*rpool
	for i, p := range known {
		ids[i] = p.id
		if p.touchedAt.Load() >= since {
			busy = append(busy, p)
		}
	}
	// Redis's time before the read stamps the floors it brings: allocate.lua
	// refuses them once they are older than maxFloorAge by that same clock.
	at, timeErr := ad.rdb.Time(ctx).Result()
	segs, err := ad.store.segments.OpenSegments(ctx, ids)
	if err != nil {
		return err
	}
	for _, p := range known {
		p.learn(segs[p.id]...)
		if timeErr == nil {
			p.stampFloors(at.UnixMilli())
		}
	}
	if len(busy) == 0 {
		return nil
	}
	ms := make([]marks, len(busy))
	for i, p := range busy {
		ms[i] = p.marks()
	}
	views, err := ad.peekAll(ctx, busy, segs)
	if err != nil {
		return err
	}
	var cs []store.Cursor
	var errs []error
	for i, p := range busy {
		view := views[i]
		if !view.ok || ms[i].behind(view) {
			continue // the reseed it needs records what it skips
		}
		for _, s := range segs[p.id] {
			r := view.segs[s.ID]
			switch {
			case !r.present:
			case r.state != "":
				reason := numberd.GapRetired
				if r.state == numberd.SegmentExpired {
					reason = numberd.GapExpired
				}
				if _, err := ad.closeSegment(ctx, p, view.gen, s.ID, r.used, r.state, reason); err != nil {
					errs = append(errs, fmt.Errorf("pool %s: %w", p.id, err))
				}
			case s.Range.Lo+r.used >= s.Next:
				// Also when the cursor stays: what the memos in place hold
				// below it changes (see Cursor.Held).
				cs = append(cs, r.cursor(s.ID, s.Range.Lo))
			}
		}
	}
	if len(cs) > 0 {
		errs = append(errs, ad.store.segments.SaveCursors(ctx, cs))
	}
	return errors.Join(errs...)
}

// janitor checkpoints, and purges expired idempotency records every ten
// minutes, until Close. Every node purges: a DELETE of what expired is the same
// from any of them.
func (ad *admin) janitor() {
	defer ad.life.wg.Done()
	tick := time.NewTicker(ad.opts.CheckpointEvery)
	defer tick.Stop()
	lastPurge := time.Now()
	for {
		select {
		case <-ad.life.stop:
			return
		case <-tick.C:
		}
		// Deleting answered calls' memos goes first, in time of its own: a
		// checkpoint waiting out a slow store must not keep them in place, where
		// they would pass for lost.
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		ad.dropSpent(ctx)
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), ad.opts.StoreTimeout)
		if err := ad.checkpoint(ctx); err != nil {
			ad.opts.Logger.Warn("checkpoint failed", "err", err)
		}
		if time.Since(lastPurge) >= 10*time.Minute {
			lastPurge = time.Now()
			if n, err := ad.store.records.Purge(ctx); err != nil {
				ad.opts.Logger.Warn("purging idempotency records failed", "err", err)
			} else if n > 0 {
				ad.opts.Logger.Debug("purged expired idempotency records", "count", n)
			}
		}
		cancel()
	}
}
