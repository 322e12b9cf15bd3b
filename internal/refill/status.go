package refill

import (
	"context"
	"fmt"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// Trigger starts a refill of pool now, if none is under way, and returns the
// pool's refill status. It returns numberd.ErrInvalid for a pool without an
// upstream, or with one that is not configured.
func (w *Worker) Trigger(ctx context.Context, pool string) (numberd.RefillStatus, error) {
	cfg, err := w.settings.Pool(ctx, pool)
	if err != nil {
		return numberd.RefillStatus{}, err
	}
	if cfg.Upstream == "" {
		return numberd.RefillStatus{}, fmt.Errorf("%w: pool %s has no upstream to refill from; load segments by hand", numberd.ErrInvalid, pool)
	}
	if w.cfg.Upstreams[cfg.Upstream] == nil {
		return numberd.RefillStatus{}, fmt.Errorf("%w: upstream %q of pool %s is not configured", numberd.ErrInvalid, cfg.Upstream, pool)
	}
	st, err := w.Status(ctx, pool)
	if err != nil {
		return st, err
	}
	// A download under way answers this request too; otherwise the operator asks
	// for a new one, which must not be lost to a refill of this node that is just
	// ending or to another node's brief look at the pool.
	w.kick(pool, w.state(pool), st.State != numberd.RefillRequesting)
	st.State = numberd.RefillRequesting // the kick is queued: the download is under way
	return st, nil
}

// Status returns pool's refill status, from its latest download.
func (w *Worker) Status(ctx context.Context, pool string) (numberd.RefillStatus, error) {
	cfg, err := w.settings.Pool(ctx, pool)
	if err != nil {
		return numberd.RefillStatus{}, err
	}
	st := numberd.RefillStatus{State: numberd.RefillIdle, UpdatedAt: cfg.UpdatedAt, EffectiveThreshold: cfg.RefillThreshold}
	if eff := w.state(pool).effective.Load(); eff > st.EffectiveThreshold {
		st.EffectiveThreshold = eff
	}
	job, ok, err := w.refills.LatestJob(ctx, pool)
	if err != nil || !ok {
		return st, err
	}
	st.UpdatedAt = job.UpdatedAt
	switch job.State {
	case store.JobRequesting:
		st.State, st.Ywlsh, st.LastError = numberd.RefillRequesting, job.Ywlsh, job.LastError
	case store.JobFailed:
		st.State, st.Ywlsh, st.LastError = numberd.RefillFailed, job.Ywlsh, job.LastError
	}
	return st, nil
}
