package refill

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/numberd/numberd/internal/store"
)

// acquire takes pool's refill lock. Another node holds it briefly whenever it
// looks at the pool; an operator's request waits that out, and gives up only to a
// download under way (which answers it) or after twice the lock's lease.
func (w *Worker) acquire(ctx context.Context, pool string, manual bool) (int64, error) {
	deadline := time.Now().Add(2 * w.cfg.LockTTL)
	for {
		fence, err := w.refills.AcquireLock(ctx, pool, w.cfg.Node, w.cfg.LockTTL)
		if !manual || !errors.Is(err, store.ErrHeld) || time.Now().After(deadline) {
			return fence, err
		}
		if job, ok, jerr := w.refills.LatestJob(ctx, pool); jerr == nil && ok && job.State == store.JobRequesting {
			return 0, err
		}
		select {
		case <-time.After(time.Duration(50+mrand.IntN(100)) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// renew keeps the lock's lease until ctx ends, cancelling the refill with the
// cause when the lock is lost.
func (w *Worker) renew(ctx context.Context, pool string, fence int64, lost context.CancelCauseFunc) {
	tick := time.NewTicker(w.cfg.RenewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RenewEvery)
		err := w.refills.RenewLock(rctx, pool, w.cfg.Node, fence, w.cfg.LockTTL)
		cancel()
		if errors.Is(err, store.ErrFenced) {
			lost(w.fencedErr(pool, err))
			return
		}
	}
}

// fencedErr logs and counts a write refused for a stale fencing token.
func (w *Worker) fencedErr(pool string, err error) error {
	if errors.Is(err, store.ErrFenced) {
		w.cfg.Metrics.RefillFenced.Inc()
		w.cfg.Logger.Warn("refill write refused: stale fencing token, another node holds the refill lock", "pool", pool, "err", err)
	}
	return err
}
