package refill

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// DefaultQuantity is how many numbers a download asks for when the pool does not say.
const DefaultQuantity = 1000

// failedPause is how long after a refused download the next one waits, unless asked for.
const failedPause = 30 * time.Second

// refill downloads one segment for pool if it needs one, holding the lock.
func (w *Worker) refill(ctx context.Context, pool string, ps *poolState, manual bool) error {
	cfg, err := w.settings.Pool(ctx, pool)
	if err != nil {
		return err
	}
	up := w.cfg.Upstreams[cfg.Upstream]
	if up == nil {
		return fmt.Errorf("upstream %q is not configured", cfg.Upstream)
	}
	fence, err := w.acquire(ctx, pool, manual)
	if errors.Is(err, store.ErrHeld) {
		return nil // another node refills this pool
	}
	if err != nil {
		return err
	}
	ctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	renewed := make(chan struct{})
	go func() { defer close(renewed); w.renew(ctx, pool, fence, lost) }()
	defer func() {
		lost(nil)
		<-renewed
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = w.refills.ReleaseLock(rctx, pool, w.cfg.Node, fence)
		cancel()
	}()

	job, open, err := w.refills.OpenJob(ctx, pool)
	if err != nil {
		return err
	}
	if !open && !manual {
		// After a download failed for good, wait before the next: the upstream's
		// refusal is unlikely to change within seconds.
		if last, ok, err := w.refills.LatestJob(ctx, pool); err == nil && ok && last.State == store.JobFailed && time.Since(last.UpdatedAt) < failedPause {
			return nil
		}
	}
	if !open {
		// Decided under the lock: the node that held it before may just have refilled.
		st, err := w.cfg.Engine.Pool(ctx, pool)
		if err != nil {
			return err
		}
		w.measure(ps, st)
		if !manual && st.Available > ps.effective.Load() {
			return nil
		}
		quantity := cfg.RefillQuantity
		if quantity <= 0 {
			quantity = DefaultQuantity
		}
		if job, err = w.refills.CreateJob(ctx, pool, fence, newYwlsh(), quantity); err != nil {
			return w.fencedErr(pool, err)
		}
		w.cfg.Logger.Info("refill started", "pool", pool, "ywlsh", job.Ywlsh, "quantity", job.Quantity, "upstream", cfg.Upstream)
	} else {
		w.cfg.Logger.Info("refill resumed", "pool", pool, "ywlsh", job.Ywlsh, "attempts", job.Attempts)
	}
	return w.download(ctx, cfg, up, fence, job, ps)
}

// download asks the upstream for job's segment until it answers, repeating the
// same ywlsh after every failure that may have been granted, and stores it.
func (w *Worker) download(ctx context.Context, cfg numberd.Pool, up Upstream, fence int64, job store.Job, ps *poolState) error {
	started := time.Now()
	attempts := job.Attempts
	for {
		attempts++
		grant, err := up.Apply(ctx, cfg.ID, job.Quantity, job.Ywlsh)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			state := store.JobRequesting
			if errors.Is(err, ErrRefused) {
				state = store.JobFailed
			}
			w.cfg.Metrics.RefillDownloads.WithLabelValues(cfg.ID, "attempt_failed").Inc()
			if uerr := w.refills.UpdateJob(ctx, cfg.ID, fence, job.ID, attempts, err.Error(), state); uerr != nil {
				return w.fencedErr(cfg.ID, uerr)
			}
			if state == store.JobFailed {
				w.cfg.Metrics.RefillDownloads.WithLabelValues(cfg.ID, "failed").Inc()
				w.cfg.Logger.Warn("refill failed: the upstream refused", "pool", cfg.ID, "ywlsh", job.Ywlsh, "err", err)
				return nil
			}
			w.cfg.Logger.Info("refill attempt failed; repeating the same ywlsh", "pool", cfg.ID, "ywlsh", job.Ywlsh, "attempt", attempts, "err", err)
			if err := w.sleep(ctx, attempts); err != nil {
				return err
			}
			continue
		}
		seg, err := w.store(ctx, cfg, fence, job, grant)
		if errors.Is(err, store.ErrFenced) {
			return w.fencedErr(cfg.ID, err)
		}
		if err != nil {
			if errors.Is(err, segment.ErrInvalid) || errors.Is(err, numberd.ErrOverlap) || errors.Is(err, numberd.ErrInvalid) {
				// The platform answered garbage: keep what the pool has, say why.
				msg := "upstream granted an unusable segment: " + err.Error()
				w.cfg.Metrics.RefillDownloads.WithLabelValues(cfg.ID, "failed").Inc()
				w.cfg.Logger.Error("refill refused the upstream's segment", "pool", cfg.ID, "ywlsh", job.Ywlsh, "start", grant.Start, "end", grant.End, "err", err)
				return w.fencedErr(cfg.ID, w.refills.UpdateJob(ctx, cfg.ID, fence, job.ID, attempts, msg, store.JobFailed))
			}
			return err
		}
		took := time.Since(started)
		w.cfg.Metrics.RefillDownloads.WithLabelValues(cfg.ID, "ok").Inc()
		w.cfg.Metrics.RefillSeconds.Observe(took.Seconds())
		w.mu.Lock()
		if ps.download == 0 {
			ps.download = took.Seconds()
		} else {
			ps.download = 0.5*ps.download + 0.5*took.Seconds()
		}
		w.mu.Unlock()
		w.cfg.Logger.Info("refill stored a segment", "pool", cfg.ID, "ywlsh", job.Ywlsh, "segment", seg.ID,
			"start", seg.Range.Start(), "end", seg.Range.End(), "attempts", attempts, "duration", took)
		if err := w.cfg.Engine.SegmentAdded(ctx, seg); err != nil {
			w.cfg.Logger.Warn("the engine did not take the new segment yet", "pool", cfg.ID, "segment", seg.ID, "err", err)
		}
		return nil
	}
}

// store validates a grant like a segment loaded by hand and stores it with the job.
func (w *Worker) store(ctx context.Context, cfg numberd.Pool, fence int64, job store.Job, g Grant) (numberd.Segment, error) {
	if g.Ywlsh != "" && g.Ywlsh != job.Ywlsh {
		return numberd.Segment{}, fmt.Errorf("%w: the grant names ywlsh %q, the request %q", segment.ErrInvalid, g.Ywlsh, job.Ywlsh)
	}
	r, err := segment.ParseRange(g.Start, g.End, cfg.Digits)
	if err != nil {
		return numberd.Segment{}, err
	}
	if r.Size() > job.Quantity {
		return numberd.Segment{}, fmt.Errorf("%w: %s holds %d numbers, more than the %d asked for", segment.ErrInvalid, r, r.Size(), job.Quantity)
	}
	return w.refills.CompleteJob(ctx, cfg.ID, fence, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: job.Ywlsh, Ref: job.Ywlsh})
}

// sleep waits out the backoff before attempt+1: exponential, with full jitter.
func (w *Worker) sleep(ctx context.Context, attempt int) error {
	ceiling := float64(w.cfg.BackoffMin) * math.Pow(2, float64(min(attempt-1, 20)))
	d := time.Duration(mrand.Float64() * math.Min(ceiling, float64(w.cfg.BackoffMax)))
	select {
	case <-time.After(max(d, w.cfg.BackoffMin/2)):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// newYwlsh makes up a business serial number: the time, for people reading it,
// and randomness, so no two nodes ever make the same one.
func newYwlsh() string {
	return "ND" + strconv.FormatInt(time.Now().UTC().UnixMilli(), 10) + randomHex(6)
}
