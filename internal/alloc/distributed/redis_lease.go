package distributed

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// leaser extends the pools' leases and reseeds their Redis states, under each
// pool's lease lock.
type leaser struct {
	rdb    RedisClient
	store  stores
	opts   *alloc.Options
	life   *life      // extensions run in the background
	names  *namer     // the node's token in lease locks
	unsure *unsettled // trims and lost seeds for the resolver to settle
}

// lock takes p's lease lock, waiting while another holder has it. Extending a lease
// and reseeding happen under it, so nodes take turns; a holder that stops loses it
// after lockTTL, and what it does late is refused by the checks in Redis and the
// store, not by the lock.
func (ls *leaser) lock(ctx context.Context, p *rpool) (unlock func(), err error) {
	token := ls.names.node + "-" + randomToken()
	for {
		got, err := scripts.lock.Run(ctx, ls.rdb, []string{p.keys.lock}, token, lockTTL.Milliseconds()).Int()
		ls.opts.Metrics.RedisCalls.WithLabelValues("lock").Inc()
		if err != nil {
			return nil, redisErr(err)
		}
		if got == 1 {
			return func() {
				ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
				defer cancel()
				_ = scripts.unlock.Run(ctx, ls.rdb, []string{p.keys.lock}, token).Err()
			}, nil
		}
		select {
		case <-time.After(time.Duration(5+rand.IntN(10)) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// extendAsync starts extending p's lease ahead of need, unless this node already is.
func (ls *leaser) extendAsync(p *rpool) { ls.startExtension(p, 0) }

// extend makes sure p has at least need reserved numbers ahead, waiting for the
// extension under way or a new one.
func (ls *leaser) extend(ctx context.Context, p *rpool, need int64) error {
	ext := ls.startExtension(p, need)
	select {
	case <-ext.Done:
		return ext.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (ls *leaser) startExtension(p *rpool, need int64) *alloc.Extension {
	p.leaseMu.Lock()
	defer p.leaseMu.Unlock()
	if p.extension != nil {
		return p.extension
	}
	ext := &alloc.Extension{Done: make(chan struct{})}
	if ls.life.closed.Load() {
		ext.Err = numberd.ErrClosed
		close(ext.Done)
		return ext
	}
	p.lease.Resize(*ls.opts)
	want := max(need, p.lease.Size)
	p.extension = ext
	ls.life.wg.Add(1)
	go func() {
		defer ls.life.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), ls.opts.StoreTimeout)
		err := ls.doExtend(ctx, p, want)
		cancel()
		if err != nil {
			ls.opts.Metrics.Reservations.WithLabelValues("error").Inc()
			ls.opts.Logger.Warn("extending the lease failed", "pool", p.id, "err", err)
		}
		p.leaseMu.Lock()
		p.extension = nil
		p.leaseMu.Unlock()
		ext.Err = err
		close(ext.Done)
	}()
	return ext
}

// doExtend reserves numbers in the store and raises the Redis lease over them, so
// that want numbers lie reserved ahead of the pool's cursor. It first checks that
// Redis and the store agree; where they do not, it reseeds.
func (ls *leaser) doExtend(ctx context.Context, p *rpool, want int64) error {
	unlock, m, cfg, segs, view, err := ls.lockAndLoad(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case !view.ok:
		return ls.reseedLocked(ctx, p, cfg, segs, view, false, "unusable")
	case view.gen != cfg.Epoch:
		return ls.reseedLocked(ctx, p, cfg, segs, view, false, "generation")
	case m.behind(view):
		return ls.reseedLocked(ctx, p, cfg, segs, view, false, "behind")
	case view.unqueued(segs):
		return ls.reseedLocked(ctx, p, cfg, segs, view, true, "unqueued")
	}
	if added, err := ls.addMissing(ctx, p, cfg.Epoch, segs, view); err != nil {
		return err
	} else if added {
		if _, segs, view, err = ls.load(ctx, p); err != nil {
			return err
		}
		if !view.ok || view.gen != cfg.Epoch || m.behind(view) {
			return nil // changed under us; the caller's retry sorts it out
		}
	}
	byID := map[int64]numberd.Segment{}
	var cs []store.Cursor
	for _, s := range segs {
		byID[s.ID] = s
		// Every segment Redis has used from, the used-up ones too: a loss then
		// skips only what lies ahead of these cursors.
		if rv := view.segs[s.ID]; rv.present && s.Range.Lo+rv.used >= s.Next {
			cs = append(cs, rv.cursor(s.ID, s.Range.Lo))
		}
	}
	var rs []store.Reservation
	args := []any{cfg.Epoch, 0}
	left := want
	for _, id := range view.queue {
		seg, ok := byID[id]
		rv := view.segs[id]
		if !ok || !rv.present {
			return ls.reseedLocked(ctx, p, cfg, segs, view, true, "queue disagrees")
		}
		if reserved := seg.ReservedHi - seg.Range.Lo + 1; rv.lease != reserved {
			return ls.reseedLocked(ctx, p, cfg, segs, view, true, "lease disagrees")
		}
		if left <= 0 {
			continue
		}
		target := min(seg.Range.Size(), rv.used+left)
		left -= target - rv.used
		if target > rv.lease {
			rs = append(rs, store.Reservation{SegmentID: id, From: seg.ReservedHi, To: seg.Range.Lo + target - 1})
			args = append(args, id, rv.lease, target)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	args[1] = len(rs)
	if err := ls.store.gens.ReserveAt(ctx, p.id, cfg.Epoch, rs, cs); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // reseeded or extended meanwhile: the retry reads afresh
		}
		return err
	}
	reply, err := scripts.lease.Run(ctx, ls.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	ls.opts.Metrics.RedisCalls.WithLabelValues("lease").Inc()
	if err != nil {
		// The store holds the reservation; Redis may or may not. The next extension
		// sees any disagreement and reseeds: the reserved numbers become a gap.
		return redisErr(err)
	}
	if reply != replyOK {
		return ls.reseedLocked(ctx, p, cfg, segs, view, true, "lease raise refused: "+reply)
	}
	ls.opts.Metrics.Reservations.WithLabelValues("ok").Inc()
	return nil
}

// lockAndLoad takes p's lease lock (see lock), then copies what the node knows
// went out of p (see marks) and loads p (see load). Unless it fails, the caller
// unlocks.
func (ls *leaser) lockAndLoad(ctx context.Context, p *rpool) (unlock func(), m marks, cfg numberd.Pool, segs []numberd.Segment, view redisView, err error) {
	if unlock, err = ls.lock(ctx, p); err != nil {
		return nil, m, cfg, nil, view, err
	}
	m = p.marks()
	if cfg, segs, view, err = ls.load(ctx, p); err != nil {
		unlock()
		return nil, m, cfg, nil, view, err
	}
	return unlock, m, cfg, segs, view, nil
}

// load reads p's settings and segments from the store and its state from Redis,
// taking the store's checkpoints in as floors of what went out.
func (ls *leaser) load(ctx context.Context, p *rpool) (numberd.Pool, []numberd.Segment, redisView, error) {
	cfg, err := ls.store.pools.Pool(ctx, p.id)
	if err != nil {
		return cfg, nil, redisView{}, err
	}
	p.seen(cfg.Epoch)
	segs, err := ls.store.segments.Segments(ctx, p.id)
	if err != nil {
		return cfg, nil, redisView{}, err
	}
	p.learn(segs...)
	ids := make([]int64, len(segs))
	for i, s := range segs {
		ids[i] = s.ID
	}
	view, err := ls.peek(ctx, p, ids)
	return cfg, segs, view, err
}

// addMissing adds to Redis the open segments of the store it lacks: a segment
// loaded while Redis was away, or whose add was lost.
func (ls *leaser) addMissing(ctx context.Context, p *rpool, epoch int64, segs []numberd.Segment, view redisView) (bool, error) {
	args := []any{epoch, 0}
	missing := 0
	for _, s := range segs {
		rv := view.segs[s.ID]
		if s.State != numberd.SegmentOpen || rv.state != "" {
			continue
		}
		used := max(s.ReservedHi, s.Next-1) - s.Range.Lo + 1
		if used >= s.Range.Size() && !rv.present {
			continue
		}
		if !rv.present {
			missing++
		}
		args = append(args, s.ID, s.Range.Size(), used, expiryMillis(s.ExpiresAt))
		args[1] = args[1].(int) + 1
	}
	if missing == 0 {
		return false, nil
	}
	reply, err := scripts.add.Run(ctx, ls.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	ls.opts.Metrics.RedisCalls.WithLabelValues("add").Inc()
	if err != nil {
		return false, redisErr(err)
	}
	return strings.HasPrefix(reply, replyOK), nil
}

func expiryMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
