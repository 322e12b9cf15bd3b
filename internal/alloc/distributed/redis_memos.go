package distributed

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/numberd/numberd"
)

// Every allocate call that takes numbers leaves a memo of its answer in its
// pool's state (see allocate.lua). The memo goes once the answer is known to
// have reached the node (spentCalls), or is closed into a tombstone once what
// the call took is recorded (closeMemo). A memo that stays longer than any call
// takes is of a call whose node died, or was cut off, before it could do either:
// the sweep (settleLeftMemos) records what it took as a recovery gap, as the
// answer may or may not have reached a caller. So no loss of a key of its own,
// the entry of unsettled work of a node that died, or a node that could reach
// neither Redis nor the store leaves a call's numbers unaccounted for.

// memoAge is how old, by Redis's clock, a memo must be before the sweep records
// it: a node answered long before, or has given the call up to its resolver.
const memoAge = orphanAge

// spentCalls are the ids of a pool's calls whose answers the node got: their
// memos go with the pool's next call, or with the janitor's next pass when no
// call comes.
type spentCalls struct {
	mu    sync.Mutex
	ids   []string
	since time.Time // when the oldest of ids was added
}

func (s *spentCalls) add(ids ...string) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	if len(s.ids) == 0 {
		s.since = time.Now()
	}
	s.ids = append(s.ids, ids...)
	s.mu.Unlock()
}

func (s *spentCalls) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.ids
	s.ids = nil
	return ids
}

// takeIdle takes the ids held for longer than d: no call of the pool came to
// delete their memos.
func (s *spentCalls) takeIdle(d time.Duration) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 || time.Since(s.since) < d {
		return nil
	}
	ids := s.ids
	s.ids = nil
	return ids
}

func memoField(id string) string { return "m:" + id }

// dropSpent deletes the memos of answered calls of pools that made no call
// since, in one round trip; on failure they wait for the next pass.
func (ad *admin) dropSpent(ctx context.Context) {
	pipe := ad.rdb.Pipeline()
	var held []*rpool
	var ids [][]string
	for _, p := range ad.pools.all() {
		spent := p.spent.takeIdle(ad.opts.CheckpointEvery)
		if len(spent) == 0 {
			continue
		}
		fields := make([]string, len(spent))
		for i, id := range spent {
			fields[i] = memoField(id)
		}
		pipe.HDel(ctx, p.keys.seg, fields...)
		held, ids = append(held, p), append(ids, spent)
	}
	if len(held) == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		for i, p := range held {
			p.spent.add(ids[i]...)
		}
		ad.opts.Logger.Debug("deleting the memos of answered calls waits for Redis", "err", err)
	}
}

// closeMemo replaces call id's memo with a tombstone, what it took being
// recorded: a retry of the call lingering somewhere takes nothing.
func (res *resolver) closeMemo(ctx context.Context, p *rpool, id string) error {
	if id == "" {
		return nil
	}
	err := scripts.resolve.Run(ctx, res.rdb, []string{p.keys.seg}, id, "close").Err()
	res.opts.Metrics.RedisCalls.WithLabelValues("resolve").Inc()
	return redisErr(err)
}

// leftMemos returns, for each pool of ps, its memos older than memoAge by call
// id, in one round trip, deleting tombstones older than tombstoneAge on the way.
func (res *resolver) leftMemos(ctx context.Context, ps []*rpool) ([]map[string]string, error) {
	calls := make([]scriptCall, len(ps))
	for i, p := range ps {
		calls[i] = scriptCall{keys: []string{p.keys.seg}, args: []any{memoAge.Milliseconds(), tombstoneAge.Milliseconds()}}
	}
	replies, err := res.pipe.pipelined(ctx, scripts.orphans, "orphans", calls)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(ps))
	for i, reply := range replies {
		for line := range strings.SplitSeq(reply, "\n") {
			if id, memo, ok := strings.Cut(line, " "); ok {
				if out[i] == nil {
					out[i] = map[string]string{}
				}
				out[i][id] = memo
			}
		}
	}
	return out, nil
}

// ownedElsewhere reports whether the call id is known as one whose answer was
// lost: to this node, which settles it itself, or by an entry a node kept in the
// store, Redis being away. Their settling reads the memo, as abandoned, and
// keeps a retried key's numbers out of any gap.
func (res *resolver) ownedElsewhere(ctx context.Context, p *rpool, id string) (bool, error) {
	if res.unsure.holds(id) {
		return true, nil
	}
	return res.store.backlog.Has(ctx, p.id, id)
}

// settleLeftMemo records what the call id took, by its memo, as a recovery gap,
// and closes the memo. No entry of unsettled work tells of the call: its node
// may have answered it and died, or lost its answer and died before it could
// say so anywhere.
func (res *resolver) settleLeftMemo(ctx context.Context, p *rpool, id, memo string) (int64, error) {
	runs, err := memoRuns(memo)
	if err != nil {
		res.opts.Logger.Error("a memo left in place cannot be read: what its call took, if anything, is unaccounted for", "pool", p.id, "call", id, "err", err)
		return 0, res.closeMemo(ctx, p, id)
	}
	spans, err := res.pools.spans(ctx, p, runs)
	if err != nil {
		return 0, err
	}
	n, err := res.records.skip(ctx, p, spans, numberd.GapRecovery)
	if err != nil {
		return 0, err
	}
	return n, res.closeMemo(ctx, p, id)
}

// memoRuns reads what a memo's call took: the runs of its allocate answer.
func memoRuns(memo string) ([]offsetRun, error) {
	f := strings.Fields(memo)
	if len(f) < 8 {
		return nil, errMalformedMemo(memo)
	}
	n, err := strconv.Atoi(f[5])
	if err != nil {
		return nil, errMalformedMemo(memo)
	}
	reply, err := parseAllocateReply(memo, n)
	if err != nil {
		return nil, err
	}
	if reply.code != replyOK {
		return nil, errMalformedMemo(memo)
	}
	return reply.runs, nil
}

func errMalformedMemo(memo string) error {
	return fmt.Errorf("%w: malformed memo %q", numberd.ErrRedisUnavailable, memo)
}
