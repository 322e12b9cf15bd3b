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
	"log/slog"
	"sync"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/store"
)

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
	cfg      Config
	settings Pools   // the pools' settings, from cfg.Store
	refills  Refills // the refill lock and jobs, from cfg.Store
	kicks    chan kick
	stop     chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex // guards the measurements in poolState
	pools sync.Map   // pool id → *poolState; read on every allocation
}

type kick struct {
	pool   string
	manual bool
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
	return &Worker{cfg: cfg, settings: cfg.Store, refills: cfg.Store.Refills(), kicks: make(chan kick, 256), stop: make(chan struct{})}
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
