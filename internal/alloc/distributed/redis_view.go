package distributed

import (
	"context"
	"slices"

	"github.com/numberd/numberd"
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
	// memoFrom is the lowest offset a call took whose memo is in place, or -1:
	// numbers from there may have reached no caller, and no gap yet.
	memoFrom int64
}

// cursor is the store's checkpoint of the segment at first number lo: the
// numbers used, and how many of those the memos in place tell of (see Cursor).
func (s redisSeg) cursor(id, lo int64) store.Cursor {
	c := store.Cursor{SegmentID: id, Next: lo + s.used}
	if s.memoFrom >= 0 && s.memoFrom < s.used {
		c.Held = s.used - s.memoFrom
	}
	return c
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

// behind reports whether view is of an older version than floor.
func (view redisView) behind(floor stateMark) bool {
	return (stateMark{view.gen, view.ver}).before(floor)
}

func (ls *leaser) peek(ctx context.Context, p *rpool, ids []int64) (redisView, error) {
	reply, err := scripts.peek.Run(ctx, ls.rdb, []string{p.keys.meta, p.keys.seg}, peekArgs(ids)...).Text()
	ls.opts.Metrics.RedisCalls.WithLabelValues("peek").Inc()
	if err != nil {
		return redisView{}, redisErr(err)
	}
	return parsePeek(reply, ids)
}

// peekAll returns Redis's view of every pool of ps and its segments in segs, in
// one round trip; without Redis, empty views and ErrUnavailable.
func (ad *admin) peekAll(ctx context.Context, ps []*rpool, segs map[string][]numberd.Segment) ([]redisView, error) {
	views := make([]redisView, len(ps))
	calls := make([]scriptCall, len(ps))
	ids := make([][]int64, len(ps))
	for i, p := range ps {
		for _, s := range segs[p.id] {
			ids[i] = append(ids[i], s.ID)
		}
		calls[i] = scriptCall{keys: []string{p.keys.meta, p.keys.seg}, args: peekArgs(ids[i])}
	}
	replies, err := ad.pipe.pipelined(ctx, scripts.peek, "peek", calls)
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
