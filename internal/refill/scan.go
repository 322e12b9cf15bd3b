package refill

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/numberd/numberd"
)

// poolState is what the worker tracks of one pool on this node.
type poolState struct {
	effective  atomic.Int64 // the threshold that triggers a refill now
	kicked     atomic.Bool  // a kick is queued
	running    atomic.Bool  // this node runs a refill of the pool
	rerun      atomic.Bool  // an operator asked for a refill while one ran here
	rate       float64      // numbers issued per second, smoothed
	lastIssued int64
	lastAt     time.Time
	download   float64 // seconds a download took, smoothed
}

func (w *Worker) state(pool string) *poolState {
	if ps, ok := w.pools.Load(pool); ok {
		return ps.(*poolState)
	}
	fresh := &poolState{}
	fresh.effective.Store(-1) // unknown until the first scan
	ps, _ := w.pools.LoadOrStore(pool, fresh)
	return ps.(*poolState)
}

// Observe is the allocation path's signal: pool has available numbers left. It
// costs a map lookup and a compare, and kicks a refill when the pool is low.
func (w *Worker) Observe(pool string, available int64) {
	ps, ok := w.pools.Load(pool)
	if !ok {
		// A pool not measured yet (new, or new to this node): let the refill
		// decide now rather than wait for the next scan.
		w.kick(pool, w.state(pool), false)
		return
	}
	if available <= ps.(*poolState).effective.Load() {
		w.kick(pool, ps.(*poolState), false)
	}
}

func (w *Worker) kick(pool string, ps *poolState, manual bool) {
	if !manual && !ps.kicked.CompareAndSwap(false, true) {
		return
	}
	select {
	case w.kicks <- kick{pool: pool, manual: manual}:
	default:
		ps.kicked.Store(false) // full: the next scan finds the pool
	}
}

// scan measures every pool with an upstream and starts the refills they need.
func (w *Worker) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ScanEvery)
	defer cancel()
	pools, err := w.settings.Pools(ctx)
	if err != nil {
		w.cfg.Logger.Warn("refill scan failed", "err", err)
		return
	}
	for _, p := range pools {
		if p.Upstream == "" {
			continue
		}
		st, err := w.cfg.Engine.Pool(ctx, p.ID)
		if err != nil {
			w.cfg.Logger.Warn("refill scan failed", "pool", p.ID, "err", err)
			continue
		}
		ps := w.state(p.ID)
		w.measure(ps, st)
		open, _, err := w.refills.OpenJob(ctx, p.ID)
		if err == nil && (open.ID != 0 || st.Available <= ps.effective.Load()) {
			w.start(p.ID, false)
		}
	}
}

// measure updates the pool's burn rate and effective threshold: the fixed
// threshold, or more when the numbers left would not last twice the time a
// download takes at the pool's pace.
func (w *Worker) measure(ps *poolState, st numberd.PoolStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if !ps.lastAt.IsZero() {
		if dt := now.Sub(ps.lastAt).Seconds(); dt > 0 && st.Issued >= ps.lastIssued {
			rate := float64(st.Issued-ps.lastIssued) / dt
			ps.rate = 0.5*ps.rate + 0.5*rate
		}
	}
	ps.lastIssued, ps.lastAt = st.Issued, now
	download := ps.download
	if download == 0 {
		download = 1 // until a download has been timed
	}
	ahead := int64(math.Ceil(2 * ps.rate * (download + w.cfg.ScanEvery.Seconds())))
	ps.effective.Store(max(st.RefillThreshold, ahead))
}
