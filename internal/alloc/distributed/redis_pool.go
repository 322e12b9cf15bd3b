package distributed

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
)

// catalog is the pools a node knows: each one's state, made from the store at
// first use, and its segments, which turn the offsets Redis answers into numbers.
type catalog struct {
	store stores
	opts  *alloc.Options
	life  *life
	known alloc.Registry[*rpool]
}

// rpool is what a node keeps of one pool: the requests waiting for an allocate
// call, the segments it has seen (to turn offsets into numbers), and its lease
// sizing.
type rpool struct {
	id     string
	digits int
	keys   poolKeys

	batchMu  sync.Mutex
	inFlight bool    // a request of p is making an allocate call
	queued   []*call // requests waiting for the next one
	batch    []*call // the batch of the call in flight, kept for the next
	spent    spentCalls

	segMu sync.RWMutex
	segs  map[int64]numberd.Segment

	leaseMu   sync.Mutex
	lease     alloc.Lease
	extension *alloc.Extension // this node's lease extension in flight, if any

	markMu  sync.Mutex
	mark    stateMark       // the newest state this node saw of p
	cursors map[int64]int64 // per segment, the most numbers this node saw used
	// Per segment, the numbers the store's checkpoint says were used, read at
	// seed generation ckGen or later: a floor of what any state of ckGen or a
	// later generation has used. Other nodes' checkpoints reach this node through
	// it, so that a state gone back in time is refused here too, although this
	// node never saw the newer one (see checkpoint).
	ckGen int64
	ckpt  map[int64]int64

	gen       atomic.Int64 // the newest seed generation seen in the store
	leased    atomic.Int64 // reserved, unissued numbers as of the last answer
	available atomic.Int64 // numbers left as of the last answer
	lastSync  atomic.Int64 // unix nanos of the last sync after an exhausted answer
	touchedAt atomic.Int64 // unix nanos of the last allocation, for checkpoints

	learnedAt atomic.Int64 // unix nanos of the last read of the store's floors
	// floorsAt is the Redis time (ms) read before the last read of the store's
	// floors that read them all: allocate.lua refuses floors older than
	// maxFloorAge by its own clock, however long this node paused meanwhile.
	floorsAt  atomic.Int64
	refreshMu sync.Mutex // one refresh of stale floors at a time
	triedAt   int64      // unix nanos of the last refresh tried, under refreshMu
	// triedFailed says the last refresh tried failed, under refreshMu.
	triedFailed bool
	stampedAt   atomic.Int64 // unix nanos when floorsAt was last raised
}

// stateMark orders the states of a pool: by seed generation, then by version.
type stateMark struct{ gen, ver int64 }

func (m stateMark) before(o stateMark) bool {
	return m.gen < o.gen || (m.gen == o.gen && m.ver < o.ver)
}

type poolKeys struct{ meta, seg, lock, idem, unsettled string }

func keysOf(pool string) poolKeys {
	tag := "numberd:{" + pool + "}:"
	return poolKeys{meta: tag + "meta", seg: tag + "seg", lock: tag + "lock", idem: tag + "idem:", unsettled: tag + "unsettled"}
}

// pool returns the node's state of pool id, loading it from the store at first use.
func (cat *catalog) pool(ctx context.Context, id string) (*rpool, error) {
	if p, ok := cat.known.Get(id); ok {
		return p, nil
	}
	cfg, err := cat.store.pools.Pool(ctx, id)
	if err != nil {
		return nil, err
	}
	// The store's checkpoint is the first floor of what went out: a node that
	// starts, or first serves the pool, has seen nothing of Redis's state yet.
	segs, err := cat.store.segments.Segments(ctx, id)
	if err != nil {
		return nil, err
	}
	return cat.adopt(cfg, segs)
}

// adopt returns the node's state of pool cfg, making it from cfg and the pool's
// segments segs, read from the store, if the node has none yet.
func (cat *catalog) adopt(cfg numberd.Pool, segs []numberd.Segment) (*rpool, error) {
	return cat.known.GetOrAdd(cfg.ID, func() (*rpool, error) {
		// Close looks at the pools after setting the flag: a pool added once it
		// is set would miss the final checkpoint.
		if cat.life.closed.Load() {
			return nil, numberd.ErrClosed
		}
		p := &rpool{id: cfg.ID, digits: cfg.Digits, keys: keysOf(cfg.ID), segs: map[int64]numberd.Segment{}, cursors: map[int64]int64{}, ckpt: map[int64]int64{}, lease: alloc.NewLease(*cat.opts)}
		p.seen(cfg.Epoch)
		p.learn(segs...)
		return p, nil
	})
}

// spans turns runs of offsets into number ranges.
func (cat *catalog) spans(ctx context.Context, p *rpool, runs []offsetRun) ([]segment.Range, error) {
	out := make([]segment.Range, 0, len(runs))
	for _, run := range runs {
		seg, err := cat.segment(ctx, p, run.seg)
		if err != nil {
			return nil, err
		}
		r := seg.Range
		r.Lo, r.Hi = seg.Range.Lo+run.from, seg.Range.Lo+run.to
		if r.Hi > seg.Range.Hi {
			return nil, fmt.Errorf("%w: offsets %d..%d beyond segment %d", numberd.ErrRedisUnavailable, run.from, run.to, run.seg)
		}
		out = append(out, r)
	}
	return out, nil
}

// segment returns segment id of p from the node's cache, reading the store for one
// it has not seen.
func (cat *catalog) segment(ctx context.Context, p *rpool, id int64) (numberd.Segment, error) {
	p.segMu.RLock()
	seg, ok := p.segs[id]
	p.segMu.RUnlock()
	if ok {
		return seg, nil
	}
	seg, err := cat.store.segments.Segment(ctx, p.id, id)
	if err != nil {
		return numberd.Segment{}, err
	}
	p.remember(seg)
	return seg, nil
}

// segmentOf finds the segment of p that holds r.
func (cat *catalog) segmentOf(ctx context.Context, p *rpool, r segment.Range) (int64, error) {
	for pass := 0; pass < 2; pass++ {
		p.segMu.RLock()
		for id, s := range p.segs {
			if s.Range.Prefix == r.Prefix && s.Range.Lo <= r.Lo && r.Hi <= s.Range.Hi {
				p.segMu.RUnlock()
				return id, nil
			}
		}
		p.segMu.RUnlock()
		segs, err := cat.store.segments.Segments(ctx, p.id)
		if err != nil {
			return 0, err
		}
		p.remember(segs...)
	}
	return 0, fmt.Errorf("%w: no segment of pool %s holds %s..%s", numberd.ErrRedisUnavailable, p.id, r.Start(), r.End())
}

func (p *rpool) remember(segs ...numberd.Segment) {
	p.segMu.Lock()
	for _, s := range segs {
		p.segs[s.ID] = s
	}
	p.segMu.Unlock()
}

// seen records that the store is at seed generation gen, or later.
func (p *rpool) seen(gen int64) {
	for {
		cur := p.gen.Load()
		if gen <= cur || p.gen.CompareAndSwap(cur, gen) {
			return
		}
	}
}

func (p *rpool) leaseSize() int64 {
	p.leaseMu.Lock()
	defer p.leaseMu.Unlock()
	return p.lease.Size
}

func (cat *catalog) all() []*rpool { return cat.known.All() }

func (cat *catalog) gauges() []metrics.PoolGauge {
	var out []metrics.PoolGauge
	for _, p := range cat.all() {
		out = append(out, metrics.PoolGauge{Pool: p.id, Available: p.available.Load(), Issued: -1})
	}
	return out
}
