// Package refill keeps pools from running dry: when a pool's available numbers
// fall to its effective threshold, one node (and only one) downloads the next
// segment from the pool's upstream. The download's business serial number (ywlsh)
// is recorded before the first call, and a failed or timed-out call is repeated
// with the same ywlsh, by this node or, after a crash, by the next holder of the
// pool's refill lock. The lock is a lease in the store with a fencing token, and
// the store refuses the writes of a holder whose token is stale.
package refill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// DefaultQuantity is how many numbers a download asks for when the pool does not say.
const DefaultQuantity = 1000

// failedPause is how long after a refused download the next one waits, unless asked for.
const failedPause = 30 * time.Second

// Engine is what the worker needs of the allocation engine.
type Engine interface {
	Pool(ctx context.Context, id string) (numberd.PoolStatus, error)
	// SegmentAdded tells the engine of a segment the worker stored.
	SegmentAdded(ctx context.Context, seg numberd.Segment) error
}

// Config configures a Worker.
type Config struct {
	Store     *store.Store
	Engine    Engine
	Upstreams map[string]Upstream
	Logger    *slog.Logger
	Metrics   *metrics.Metrics
	// Node names this process in the refill lock; random when empty.
	Node string
	// LockTTL is the refill lock's lease (default 10s): a holder that stops is
	// replaced after it.
	LockTTL time.Duration
	// RenewEvery is how often a holder renews its lease (default LockTTL/3).
	RenewEvery time.Duration
	// ScanEvery is how often every pool with an upstream is checked, so a missed
	// signal cannot starve a pool (default 2s).
	ScanEvery time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts (defaults 200ms, 10s).
	BackoffMin, BackoffMax time.Duration
}

// Worker runs refills. Start it; Close stops it.
type Worker struct {
	cfg   Config
	kicks chan kick
	stop  chan struct{}
	wg    sync.WaitGroup

	mu    sync.Mutex // guards the measurements in poolState
	pools sync.Map   // pool id → *poolState; read on every allocation
}

type kick struct {
	pool   string
	manual bool
}

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

// New returns a worker for cfg.
func New(cfg Config) *Worker {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Node == "" {
		cfg.Node = randomHex(8)
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 10 * time.Second
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = cfg.LockTTL / 3
	}
	if cfg.ScanEvery <= 0 {
		cfg.ScanEvery = 2 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(10*time.Second, cfg.BackoffMin)
	}
	return &Worker{cfg: cfg, kicks: make(chan kick, 256), stop: make(chan struct{})}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start runs the worker until Close.
func (w *Worker) Start() {
	w.wg.Add(1)
	go w.loop()
}

// Close stops the worker and waits for the refills under way to stop. A download
// interrupted here is resumed, with its ywlsh, by the next holder of the lock.
func (w *Worker) Close(ctx context.Context) error {
	select {
	case <-w.stop:
		return nil
	default:
	}
	close(w.stop)
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

func (w *Worker) loop() {
	defer w.wg.Done()
	tick := time.NewTicker(w.cfg.ScanEvery)
	defer tick.Stop()
	w.scan()
	for {
		select {
		case <-w.stop:
			return
		case k := <-w.kicks:
			w.state(k.pool).kicked.Store(false)
			w.start(k.pool, k.manual)
		case <-tick.C:
			w.scan()
		}
	}
}

// scan measures every pool with an upstream and starts the refills they need.
func (w *Worker) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ScanEvery)
	defer cancel()
	pools, err := w.cfg.Store.Pools(ctx)
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
		open, _, err := w.cfg.Store.OpenJob(ctx, p.ID)
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

// Trigger starts a refill of pool now, if none is under way, and returns the
// pool's refill status. It returns numberd.ErrInvalid for a pool without an
// upstream, or with one that is not configured.
func (w *Worker) Trigger(ctx context.Context, pool string) (numberd.RefillStatus, error) {
	cfg, err := w.cfg.Store.Pool(ctx, pool)
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
	cfg, err := w.cfg.Store.Pool(ctx, pool)
	if err != nil {
		return numberd.RefillStatus{}, err
	}
	st := numberd.RefillStatus{State: numberd.RefillIdle, UpdatedAt: cfg.UpdatedAt, EffectiveThreshold: cfg.RefillThreshold}
	if eff := w.state(pool).effective.Load(); eff > st.EffectiveThreshold {
		st.EffectiveThreshold = eff
	}
	job, ok, err := w.cfg.Store.LatestJob(ctx, pool)
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

// start runs a refill of pool in the background unless this node runs one.
func (w *Worker) start(pool string, manual bool) {
	ps := w.state(pool)
	if !ps.running.CompareAndSwap(false, true) {
		if manual {
			ps.rerun.Store(true)
		}
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() {
			ps.running.Store(false)
			if ps.rerun.Swap(false) {
				select {
				case <-w.stop:
				default:
					w.start(pool, true)
				}
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-w.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := w.refill(ctx, pool, ps, manual); err != nil && ctx.Err() == nil {
			w.cfg.Logger.Warn("refill stopped", "pool", pool, "err", err)
		}
	}()
}

// acquire takes pool's refill lock. Another node holds it briefly whenever it
// looks at the pool; an operator's request waits that out, and gives up only to a
// download under way (which answers it) or after twice the lock's lease.
func (w *Worker) acquire(ctx context.Context, pool string, manual bool) (int64, error) {
	deadline := time.Now().Add(2 * w.cfg.LockTTL)
	for {
		fence, err := w.cfg.Store.AcquireRefillLock(ctx, pool, w.cfg.Node, w.cfg.LockTTL)
		if !manual || !errors.Is(err, store.ErrHeld) || time.Now().After(deadline) {
			return fence, err
		}
		if job, ok, jerr := w.cfg.Store.LatestJob(ctx, pool); jerr == nil && ok && job.State == store.JobRequesting {
			return 0, err
		}
		select {
		case <-time.After(time.Duration(50+mrand.IntN(100)) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// refill downloads one segment for pool if it needs one, holding the lock.
func (w *Worker) refill(ctx context.Context, pool string, ps *poolState, manual bool) error {
	cfg, err := w.cfg.Store.Pool(ctx, pool)
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
		_ = w.cfg.Store.ReleaseRefillLock(rctx, pool, w.cfg.Node, fence)
		cancel()
	}()

	job, open, err := w.cfg.Store.OpenJob(ctx, pool)
	if err != nil {
		return err
	}
	if !open && !manual {
		// After a download failed for good, wait before the next: the upstream's
		// refusal is unlikely to change within seconds.
		if last, ok, err := w.cfg.Store.LatestJob(ctx, pool); err == nil && ok && last.State == store.JobFailed && time.Since(last.UpdatedAt) < failedPause {
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
		if job, err = w.cfg.Store.CreateJob(ctx, pool, fence, newYwlsh(), quantity); err != nil {
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
			if uerr := w.cfg.Store.UpdateJob(ctx, cfg.ID, fence, job.ID, attempts, err.Error(), state); uerr != nil {
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
				return w.fencedErr(cfg.ID, w.cfg.Store.UpdateJob(ctx, cfg.ID, fence, job.ID, attempts, msg, store.JobFailed))
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
	return w.cfg.Store.CompleteJob(ctx, cfg.ID, fence, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: job.Ywlsh, Ref: job.Ywlsh})
}

// fencedErr logs and counts a write refused for a stale fencing token.
func (w *Worker) fencedErr(pool string, err error) error {
	if errors.Is(err, store.ErrFenced) {
		w.cfg.Metrics.RefillFenced.Inc()
		w.cfg.Logger.Warn("refill write refused: stale fencing token, another node holds the refill lock", "pool", pool, "err", err)
	}
	return err
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
		err := w.cfg.Store.RenewRefillLock(rctx, pool, w.cfg.Node, fence, w.cfg.LockTTL)
		cancel()
		if errors.Is(err, store.ErrFenced) {
			lost(w.fencedErr(pool, err))
			return
		}
	}
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
