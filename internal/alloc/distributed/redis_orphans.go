package distributed

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// What a node has yet to settle lives in its memory, and also in Redis, in the
// pool's hash numberd:{pool}:unsettled (or, while Redis is away, in the store's
// table unsettled), from the node's first settling pass on:
// if the node dies before it is done, another node finds the entry and settles
// it. Settling is idempotent (a memo answers the same, or its tombstone does; a
// gap or an abandoned record is recorded once), so two nodes may settle one
// entry at once.
const (
	// orphanAge is how old another node's entry must be before a node settles it:
	// its owner had time enough to settle it, or is gone. Node clocks only decide
	// when help comes, never what is recorded.
	orphanAge = 30 * time.Second
	// orphanSweepEvery spaces the sweeps of the pools' hashes.
	orphanSweepEvery = 10 * time.Second
	// orphanPoolsPerRoundTrip bounds the pools one sweep round trip reads.
	orphanPoolsPerRoundTrip = 100
)

// unsettledEntry is an unsettledCall as Redis keeps it.
type unsettledEntry struct {
	Node   string                    `json:"node"`
	At     int64                     `json:"at"` // unix ms, the owner's clock
	Memo   string                    `json:"memo,omitempty"`
	Reqs   []pendingEntry            `json:"reqs,omitempty"`
	Took   [][][3]int64              `json:"took,omitempty"`
	Read   bool                      `json:"read,omitempty"`
	Record *store.IdempotencyRecord  `json:"record,omitempty"`
	Lost   []segment.Range           `json:"lost,omitempty"`
	LostAs string                    `json:"lost_as,omitempty"`
	Forget []store.IdempotencyRecord `json:"forget,omitempty"`
	Trims  []store.Trim              `json:"trims,omitempty"`
}

type pendingEntry struct {
	Count int    `json:"count"`
	Scope string `json:"scope,omitempty"`
	Key   string `json:"key,omitempty"`
}

func (res *resolver) entryOf(c *unsettledCall) unsettledEntry {
	out := unsettledEntry{Node: res.names.node, At: c.since.UnixMilli(), Memo: c.memo, Read: c.read, Record: c.record, Lost: c.lost, LostAs: c.lostAs, Forget: c.forget, Trims: c.trims}
	for _, r := range c.reqs {
		pe := pendingEntry{Count: r.count}
		if r.idem != nil {
			pe.Scope, pe.Key = r.idem.Scope, r.idem.Key
		}
		out.Reqs = append(out.Reqs, pe)
	}
	if c.took != nil {
		out.Took = make([][][3]int64, len(c.took))
		for i, runs := range c.took {
			for _, r := range runs {
				out.Took[i] = append(out.Took[i], [3]int64{r.seg, r.from, r.to})
			}
		}
	}
	return out
}

func (en unsettledEntry) call(p *rpool, id string) unsettledCall {
	c := unsettledCall{pool: p, id: id, registered: true, memo: en.Memo, read: en.Read, record: en.Record, lost: en.Lost, lostAs: en.LostAs, forget: en.Forget, trims: en.Trims, since: time.UnixMilli(en.At)}
	for _, r := range en.Reqs {
		pr := pendingRequest{count: r.Count}
		if r.Key != "" {
			pr.idem = &numberd.Idempotency{Scope: r.Scope, Key: r.Key}
		}
		c.reqs = append(c.reqs, pr)
	}
	if en.Took != nil {
		c.took = make([][]offsetRun, len(en.Took))
		for i, runs := range en.Took {
			for _, r := range runs {
				c.took[i] = append(c.took[i], offsetRun{seg: r[0], from: r[1], to: r[2]})
			}
		}
	}
	return c
}

// register writes c to its pool's hash of unsettled work, so that it outlives
// this node.
func (res *resolver) register(ctx context.Context, c *unsettledCall) error {
	if c.id == "" {
		c.id = c.memo
		if c.id == "" {
			c.id = res.names.entryID()
		}
	}
	data, err := json.Marshal(res.entryOf(c))
	if err != nil {
		return err
	}
	// Redis gets half the time left at most, so that the store has the rest.
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if d, ok := ctx.Deadline(); ok {
		rctx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
	}
	rerr := res.rdb.HSet(rctx, c.pool.keys.unsettled, c.id, data).Err()
	cancel()
	if rerr == nil {
		c.registered = true
		return nil
	}
	// Redis is away (the very reason a call's outcome is unknown, often): the
	// store keeps the entry instead.
	if err := res.store.backlog.Put(ctx, store.Unsettled{Pool: c.pool.id, ID: c.id, Entry: string(data)}); err != nil {
		return errors.Join(redisErr(rerr), err)
	}
	c.registered, c.inStore = true, true
	return nil
}

// unregister removes a settled call's entry.
func (res *resolver) unregister(ctx context.Context, c *unsettledCall) error {
	switch {
	case !c.registered:
		return nil
	case c.inStore:
		return res.store.backlog.Delete(ctx, c.pool.id, c.id)
	}
	return redisErr(res.rdb.HDel(ctx, c.pool.keys.unsettled, c.id).Err())
}

// sweepStoredOrphans settles the entries other nodes left in the store, older
// than orphanAge by the store's clock, up to orphanPoolsPerRoundTrip a pass.
func (res *resolver) sweepStoredOrphans(ctx context.Context, t *sweepTally) {
	old, err := res.store.backlog.Old(ctx, orphanAge, orphanPoolsPerRoundTrip)
	if err != nil {
		res.opts.Logger.Debug("sweeping unsettled work waits for the store", "err", err)
		return
	}
	for _, u := range old {
		var en unsettledEntry
		if err := json.Unmarshal([]byte(u.Entry), &en); err != nil {
			res.opts.Logger.Error("malformed entry of unsettled work", "pool", u.Pool, "id", u.ID, "err", err)
			continue
		}
		if en.Node == res.names.node {
			continue
		}
		p, err := res.pools.pool(ctx, u.Pool)
		if err != nil {
			t.count(0, err)
			continue
		}
		c := en.call(p, u.ID)
		c.inStore = true
		t.count(res.settleOrphan(ctx, &c))
	}
}

// sweepTally counts what a sweep settled.
type sweepTally struct {
	settled, failed int
	abandoned       int64
	memos           int   // memos left in place, settled
	recovered       int64 // their numbers, recorded as recovery gaps
}

func (t *sweepTally) countMemo(n int64, err error) {
	if err != nil {
		t.failed++
		return
	}
	t.memos++
	t.recovered += n
}

func (t *sweepTally) count(abandoned int64, err error) {
	if err != nil {
		t.failed++
		return
	}
	t.settled++
	t.abandoned += abandoned
}

// settleOrphan settles another node's entry and removes it.
func (res *resolver) settleOrphan(ctx context.Context, c *unsettledCall) (int64, error) {
	n, _, err := res.settle(ctx, c)
	if err == nil {
		err = res.unregister(ctx, c)
	}
	return n, err
}

// sweepOrphans settles the entries of other nodes older than orphanAge in the
// hashes of the pools this node knows, a round trip per orphanPoolsPerRoundTrip
// pools, and logs one line if it settled any.
func (res *resolver) sweepOrphans(ctx context.Context) {
	var t sweepTally
	res.sweepStoredOrphans(ctx, &t)
	pools := res.pools.known.All()
	for from := 0; from < len(pools); from += orphanPoolsPerRoundTrip {
		batch := pools[from:min(from+orphanPoolsPerRoundTrip, len(pools))]
		cmds := make([]*redis.MapStringStringCmd, len(batch))
		pipe := res.rdb.Pipeline()
		for i, p := range batch {
			cmds[i] = pipe.HGetAll(ctx, p.keys.unsettled)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			res.opts.Logger.Debug("sweeping unsettled work waits for Redis", "err", err)
			break
		}
		left, err := res.leftMemos(ctx, batch)
		if err != nil {
			res.opts.Logger.Debug("sweeping memos left in place waits for Redis", "err", err)
			break
		}
		for i, p := range batch {
			entries := cmds[i].Val()
			for id, memo := range left[i] {
				if _, ok := entries[id]; ok {
					continue // the entry's settling reads the memo, as abandoned
				}
				if owned, err := res.ownedElsewhere(ctx, p, id); err != nil || owned {
					if err != nil {
						t.count(0, err)
					}
					continue
				}
				t.countMemo(res.settleLeftMemo(ctx, p, id, memo))
			}
			for id, raw := range entries {
				var en unsettledEntry
				if err := json.Unmarshal([]byte(raw), &en); err != nil {
					res.opts.Logger.Error("malformed entry of unsettled work", "pool", p.id, "id", id, "err", err)
					continue
				}
				if en.Node == res.names.node || time.Since(time.UnixMilli(en.At)) < orphanAge {
					continue
				}
				c := en.call(p, id)
				t.count(res.settleOrphan(ctx, &c))
			}
		}
	}
	if t.settled > 0 || t.memos > 0 || t.failed > 0 {
		res.opts.Logger.Warn("settled work other nodes left unsettled", "entries", t.settled, "abandoned_numbers", t.abandoned,
			"memos", t.memos, "recovered_numbers", t.recovered, "failed", t.failed)
	}
}
