package distributed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
)

// redisView is a pool's Redis state as peek.lua reports it.
type redisView struct {
	ok    bool // false: missing, partial, or seeded on another process or history
	gen   int64
	ver   int64
	queue []int64
	segs  map[int64]redisSeg // what Redis shows, even of a state that is not ok
}

type redisSeg struct {
	present     bool
	used, lease int64
	state       string // "" while in use; "retired" or "expired" once closed
}

// unqueued reports whether the view holds an open segment of segs, in use and
// not used up, that its queue lacks: a damaged meta key (a queue field
// rewritten), which allocate.lua would answer as exhausted for good, as the
// segment is present and so never added again.
func (view redisView) unqueued(segs []numberd.Segment) bool {
	for _, s := range segs {
		rv := view.segs[s.ID]
		if s.State == numberd.SegmentOpen && rv.present && rv.state == "" && rv.used < s.Range.Size() && !slices.Contains(view.queue, s.ID) {
			return true
		}
	}
	return false
}

func (e *Engine) peek(ctx context.Context, p *rpool, ids []int64) (redisView, error) {
	reply, err := scripts.peek.Run(ctx, e.rdb, []string{p.keys.meta, p.keys.seg}, peekArgs(ids)...).Text()
	e.opts.Metrics.RedisCalls.WithLabelValues("peek").Inc()
	if err != nil {
		return redisView{}, redisErr(err)
	}
	return parsePeek(reply, ids)
}

// peekAll returns Redis's view of every pool of ps and its segments in segs, in
// one round trip; without Redis, empty views and ErrUnavailable.
func (e *Engine) peekAll(ctx context.Context, ps []*rpool, segs map[string][]numberd.Segment) ([]redisView, error) {
	views := make([]redisView, len(ps))
	calls := make([]scriptCall, len(ps))
	ids := make([][]int64, len(ps))
	for i, p := range ps {
		for _, s := range segs[p.id] {
			ids[i] = append(ids[i], s.ID)
		}
		calls[i] = scriptCall{keys: []string{p.keys.meta, p.keys.seg}, args: peekArgs(ids[i])}
	}
	replies, err := e.pipelined(ctx, scripts.peek, "peek", calls)
	if err != nil {
		return views, err
	}
	for i := range ps {
		if views[i], err = parsePeek(replies[i], ids[i]); err != nil {
			return views, err
		}
	}
	return views, nil
}

func peekArgs(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

// parsePeek reads peek.lua's answer for the segments ids.
func parsePeek(reply string, ids []int64) (redisView, error) {
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed peek answer %q", numberd.ErrRedisUnavailable, reply)
	if len(f) != 4+len(ids) || (f[0] != "OK" && f[0] != "RESEED") {
		return redisView{}, malformed
	}
	v := redisView{ok: f[0] == "OK", segs: map[int64]redisSeg{}}
	var err error
	if f[1] != "-" {
		if v.gen, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return redisView{}, malformed
		}
	}
	if v.ver, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		v.ok = false // a damaged version: the state must be reseeded
	}
	if f[3] != "-" {
		for q := range strings.SplitSeq(f[3], ",") {
			id, err := strconv.ParseInt(q, 10, 64)
			if err != nil {
				v.ok = false
				continue
			}
			v.queue = append(v.queue, id)
		}
	}
	for _, field := range f[4:] {
		parts := strings.Split(field, ":")
		if len(parts) != 4 {
			return redisView{}, malformed
		}
		id, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return redisView{}, malformed
		}
		s := redisSeg{present: parts[1] != "-"}
		var err1, err2 error
		if s.present {
			s.used, err1 = strconv.ParseInt(parts[1], 10, 64)
		}
		if parts[2] != "-" {
			s.lease, err2 = strconv.ParseInt(parts[2], 10, 64)
		}
		if err1 != nil || err2 != nil {
			// Damaged fields: unusable, and what they show is no mark.
			v.ok, s = false, redisSeg{}
		}
		if parts[3] != "-" {
			s.state = parts[3]
		}
		v.segs[id] = s
	}
	return v, nil
}

// behind reports whether view is of an older version than floor.
func (view redisView) behind(floor stateMark) bool {
	return (stateMark{view.gen, view.ver}).before(floor)
}

// lock takes p's lease lock, waiting while another holder has it. Extending a lease
// and reseeding happen under it, so nodes take turns; a holder that stops loses it
// after lockTTL, and what it does late is refused by the checks in Redis and the
// store, not by the lock.
func (e *Engine) lock(ctx context.Context, p *rpool) (unlock func(), err error) {
	token := e.node + "-" + randomToken()
	for {
		got, err := scripts.lock.Run(ctx, e.rdb, []string{p.keys.lock}, token, lockTTL.Milliseconds()).Int()
		e.opts.Metrics.RedisCalls.WithLabelValues("lock").Inc()
		if err != nil {
			return nil, redisErr(err)
		}
		if got == 1 {
			return func() {
				ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
				defer cancel()
				_ = scripts.unlock.Run(ctx, e.rdb, []string{p.keys.lock}, token).Err()
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
func (e *Engine) extendAsync(p *rpool) { e.startExtension(p, 0) }

// extend makes sure p has at least need reserved numbers ahead, waiting for the
// extension under way or a new one.
func (e *Engine) extend(ctx context.Context, p *rpool, need int64) error {
	ext := e.startExtension(p, need)
	select {
	case <-ext.Done:
		return ext.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) startExtension(p *rpool, need int64) *alloc.Extension {
	p.leaseMu.Lock()
	defer p.leaseMu.Unlock()
	if p.extension != nil {
		return p.extension
	}
	ext := &alloc.Extension{Done: make(chan struct{})}
	if e.closed.Load() {
		ext.Err = numberd.ErrClosed
		close(ext.Done)
		return ext
	}
	p.lease.Resize(e.opts)
	want := max(need, p.lease.Size)
	p.extension = ext
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		err := e.doExtend(ctx, p, want)
		cancel()
		if err != nil {
			e.opts.Metrics.Reservations.WithLabelValues("error").Inc()
			e.opts.Logger.Warn("extending the lease failed", "pool", p.id, "err", err)
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
func (e *Engine) doExtend(ctx context.Context, p *rpool, want int64) error {
	unlock, err := e.lock(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	m := p.marks()
	cfg, segs, view, err := e.load(ctx, p)
	if err != nil {
		return err
	}
	switch {
	case !view.ok:
		return e.reseedLocked(ctx, p, cfg, segs, view, false, "unusable")
	case view.gen != cfg.Epoch:
		return e.reseedLocked(ctx, p, cfg, segs, view, false, "generation")
	case m.behind(view):
		return e.reseedLocked(ctx, p, cfg, segs, view, false, "behind")
	case view.unqueued(segs):
		return e.reseedLocked(ctx, p, cfg, segs, view, true, "unqueued")
	}
	if added, err := e.addMissing(ctx, p, cfg.Epoch, segs, view); err != nil {
		return err
	} else if added {
		if _, segs, view, err = e.load(ctx, p); err != nil {
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
		if rv := view.segs[s.ID]; rv.present && s.Range.Lo+rv.used > s.Next {
			cs = append(cs, store.Cursor{SegmentID: s.ID, Next: s.Range.Lo + rv.used})
		}
	}
	var rs []store.Reservation
	args := []any{cfg.Epoch, 0}
	left := want
	for _, id := range view.queue {
		seg, ok := byID[id]
		rv := view.segs[id]
		if !ok || !rv.present {
			return e.reseedLocked(ctx, p, cfg, segs, view, true, "queue disagrees")
		}
		if reserved := seg.ReservedHi - seg.Range.Lo + 1; rv.lease != reserved {
			return e.reseedLocked(ctx, p, cfg, segs, view, true, "lease disagrees")
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
	if err := e.store.ReserveAt(ctx, p.id, cfg.Epoch, rs, cs); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // reseeded or extended meanwhile: the retry reads afresh
		}
		return err
	}
	reply, err := scripts.lease.Run(ctx, e.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	e.opts.Metrics.RedisCalls.WithLabelValues("lease").Inc()
	if err != nil {
		// The store holds the reservation; Redis may or may not. The next extension
		// sees any disagreement and reseeds: the reserved numbers become a gap.
		return redisErr(err)
	}
	if reply != "OK" {
		return e.reseedLocked(ctx, p, cfg, segs, view, true, "lease raise refused: "+reply)
	}
	e.opts.Metrics.Reservations.WithLabelValues("ok").Inc()
	return nil
}

// load reads p's settings and segments from the store and its state from Redis,
// taking the store's checkpoints in as floors of what went out.
func (e *Engine) load(ctx context.Context, p *rpool) (numberd.Pool, []numberd.Segment, redisView, error) {
	cfg, err := e.store.Pool(ctx, p.id)
	if err != nil {
		return cfg, nil, redisView{}, err
	}
	p.seen(cfg.Epoch)
	segs, err := e.store.Segments(ctx, p.id)
	if err != nil {
		return cfg, nil, redisView{}, err
	}
	p.learn(segs...)
	ids := make([]int64, len(segs))
	for i, s := range segs {
		ids[i] = s.ID
	}
	view, err := e.peek(ctx, p, ids)
	return cfg, segs, view, err
}

// addMissing adds to Redis the open segments of the store it lacks: a segment
// loaded while Redis was away, or whose add was lost.
func (e *Engine) addMissing(ctx context.Context, p *rpool, epoch int64, segs []numberd.Segment, view redisView) (bool, error) {
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
	reply, err := scripts.add.Run(ctx, e.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	e.opts.Metrics.RedisCalls.WithLabelValues("add").Inc()
	if err != nil {
		return false, redisErr(err)
	}
	return strings.HasPrefix(reply, "OK"), nil
}

func expiryMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// reseed reseeds p's Redis state from the store because an allocate call found
// it unusable (why, as allocate.lua says; stale: the state's generation, or -1),
// unless another node reseeded it while this one waited for the lock.
func (e *Engine) reseed(ctx context.Context, p *rpool, why string, stale int64) error {
	unlock, err := e.lock(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	m := p.marks()
	cfg, segs, view, err := e.load(ctx, p)
	if err != nil {
		return err
	}
	usable := view.ok && view.gen == cfg.Epoch && why != "behind" && !m.behind(view)
	if usable && view.gen != stale {
		return nil
	}
	return e.reseedLocked(ctx, p, cfg, segs, view, usable, why)
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
func (e *Engine) reseedLocked(ctx context.Context, p *rpool, cfg numberd.Pool, segs []numberd.Segment, view redisView, usable bool, cause string) error {
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
	next, segs, gaps, err := e.store.Reseed(ctx, p.id, cfg.Epoch, max(view.gen, p.floor().gen)+1, floors)
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
	reply, err := scripts.seed.Run(ctx, e.rdb, []string{p.keys.meta, p.keys.seg}, args...).Text()
	if err != nil {
		// The store moved on. Either Redis keeps an older state that can get no
		// lease, and the next call reseeds again; or the seed ran and its reply
		// was lost, and the resolver reads its report back from the new state to
		// narrow the gaps, as the reply would have.
		if usable && len(gaps) > 0 {
			e.unsure.add(unsettledCall{pool: p, seeded: &lostSeed{gen: next, view: view, segs: segs, gaps: gaps, seen: p.seenUsedOf(gaps)}, since: time.Now()})
		}
		return redisErr(err)
	}
	if newer, ok := strings.CutPrefix(reply, "NEWER "); ok {
		// Another node's later seed is in place: the caller's retry meets it.
		if gen, err := strconv.ParseInt(newer, 10, 64); err == nil {
			p.seen(gen)
		}
		return nil
	}
	if usable {
		gaps = e.narrow(ctx, p, view, reply, segs, gaps)
	}
	e.opts.Metrics.RedisCalls.WithLabelValues("seed").Inc()
	e.opts.Metrics.Reseeds.WithLabelValues(p.id, strings.Fields(cause)[0]).Inc()
	var skipped int64
	for _, g := range gaps {
		skipped += g.Count()
		e.opts.Metrics.GapNumbers.WithLabelValues(p.id, numberd.GapRecovery).Add(float64(g.Count()))
	}
	switch {
	case len(behindStore) > 0:
		e.opts.Metrics.Rollbacks.WithLabelValues(p.id, e.store.Name()).Inc()
		e.opts.Logger.Error("the store's high-water mark is below numbers Redis or this node saw handed out: the store went back in time; resumed above them",
			"pool", p.id, "segments", behindStore, "generation", next, "gaps", len(gaps), "skipped", skipped)
	case cause == "behind":
		e.opts.Metrics.Rollbacks.WithLabelValues(p.id, "redis").Inc()
		e.opts.Logger.Error("the pool's Redis state is older than one this node saw, or than the store's checkpoint of it: Redis went back in time; reseeded from the store",
			"pool", p.id, "generation", next, "gaps", len(gaps), "skipped", skipped)
	case cause == "lost" && len(gaps) == 0:
		// A new pool's first allocation, or a pool reseeded with nothing out.
		e.opts.Logger.Debug("pool's Redis state seeded from the store", "pool", p.id, "generation", next)
	default:
		e.opts.Logger.Warn("pool's Redis state reseeded from the store", "pool", p.id, "generation", next, "cause", cause, "gaps", len(gaps), "skipped", skipped)
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
func (e *Engine) narrow(ctx context.Context, p *rpool, view redisView, reply string, segs []numberd.Segment, gaps []numberd.Gap) []numberd.Gap {
	trims, ts := trimsOf(reply, view, segs, gaps, p.seenUsedOf(gaps))
	if len(ts) == 0 {
		return gaps
	}
	if err := e.store.TrimRecovery(ctx, p.id, ts); err != nil {
		e.opts.Logger.Warn("narrowing a recovery gap failed; the resolver retries", "pool", p.id, "err", err)
		e.unsure.add(unsettledCall{pool: p, trims: ts, since: time.Now()})
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

// trimsOf is how seed.lua's reply narrows gaps: per segment, and as the store
// applies them, in order. seen is what the node saw used of each segment before
// the new state could hand any out.
func trimsOf(reply string, view redisView, segs []numberd.Segment, gaps []numberd.Gap, seen map[int64]int64) (map[int64]store.Trim, []store.Trim) {
	final, ok := parseReplaced(reply, view)
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

// settleSeed narrows a lost seed's gaps by the report of the state that replaced
// the one the reseed read: the seed's own, or a later reseed's if the seed never
// ran. Both keep it in the state they wrote. Until the old state is replaced it
// waits; if the report is of another state, or the pool's state was lost, the
// gaps stay as wide as recorded, never too narrow.
func (e *Engine) settleSeed(ctx context.Context, p *rpool, s *lostSeed) error {
	f, err := e.rdb.HMGet(ctx, p.keys.meta, "run", "gen", "replaced").Result()
	if err != nil {
		return redisErr(err)
	}
	run, _ := f[0].(string)
	genText, _ := f[1].(string)
	replaced, _ := f[2].(string)
	gen, err := strconv.ParseInt(genText, 10, 64)
	switch {
	case err != nil || replaced == "":
		return nil
	case gen < s.gen:
		return errSeedPending
	}
	if _, ts := trimsOf(run+" "+replaced, s.view, s.segs, s.gaps, s.seen); len(ts) > 0 {
		return e.store.TrimRecovery(ctx, p.id, ts)
	}
	return nil
}

// parseReplaced reads seed.lua's report of the state it replaced: per segment,
// the numbers it had used when it was replaced. It reports false unless that
// state is the one view showed or a later version of it, and went back in no
// segment: only then did its allocation end there.
func parseReplaced(reply string, view redisView) (map[int64]int64, bool) {
	f := strings.Fields(reply)
	if len(f) < 4 {
		return nil, false // "<run> -": no usable state was replaced
	}
	gen, err1 := strconv.ParseInt(f[1], 10, 64)
	ver, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || gen != view.gen || ver < view.ver {
		return nil, false
	}
	final := map[int64]int64{}
	for _, field := range f[3:] {
		id, used, ok := parseEvent(field, "")
		if !ok {
			return nil, false
		}
		final[id] = used
	}
	for id, s := range view.segs {
		if used, ok := final[id]; s.present && (!ok || used < s.used) {
			return nil, false
		}
	}
	return final, true
}

// goClose records in the background that Redis's state of generation gen closed
// segment id with used numbers handed out: its state in the store, its unused
// numbers a gap.
func (e *Engine) goClose(p *rpool, gen, id, used int64, state, reason string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StoreTimeout)
		defer cancel()
		if _, err := e.closeSegment(ctx, p, gen, id, used, state, reason); err != nil {
			e.opts.Logger.Warn("recording a closed segment failed; the checkpoint retries", "pool", p.id, "segment", id, "err", err)
		}
	}()
}

// closeSegment records in the store that the Redis state of generation gen closed
// segment id with used numbers handed out. It records nothing and reports stale if
// the pool was reseeded since: the segment, still open, went into the new
// generation, which reports its close again.
func (e *Engine) closeSegment(ctx context.Context, p *rpool, gen, id, used int64, state, reason string) (stale bool, err error) {
	seg, err := e.segment(ctx, p, id)
	if err != nil {
		return false, err
	}
	next := seg.Range.Lo + used
	var gap *numberd.Gap
	if next <= seg.Range.Hi {
		gap = &numberd.Gap{Pool: p.id, SegmentID: id, Range: seg.Range, Reason: reason}
		gap.Range.Lo = next
	}
	changed, err := e.store.CloseSegmentAt(ctx, p.id, gen, id, state, next, gap)
	if changed && gap != nil {
		e.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(gap.Count()))
		e.opts.Logger.Info("segment closed", "pool", p.id, "segment", id, "state", state, "gap_count", gap.Count())
	}
	if errors.Is(err, store.ErrConflict) {
		return true, nil
	}
	return false, err
}
