package alloc

import (
	"log/slog"
	"time"

	"github.com/numberd/numberd/internal/metrics"
)

// Options tune an engine. The zero value of each field takes its default.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	// Now is the engine's clock: it decides segment expiry and idempotency record
	// lifetimes. In embedded mode the one node's clock is the store's.
	Now func() time.Time
	// LeaseMin and LeaseMax bound how many numbers a pool reserves ahead of need
	// (defaults 100 and 5000, what the tax platform grants in one download at
	// most): a crash, or a lost Redis, strands at most one lease per pool.
	LeaseMin, LeaseMax int64
	// LeaseHorizon is how long a lease should last at the pool's pace (default 2s).
	LeaseHorizon time.Duration
	// CheckpointEvery is how often cursors are written to the store, which narrows
	// the recovery gap of a crash (default 10s; 1s in distributed mode, where the
	// checkpoint is also how nodes learn how far the others went).
	CheckpointEvery time.Duration
	// StoreTimeout bounds one background store operation (default 3s), which a
	// request may be waiting for: a store that hangs answers 503 before the
	// request's own deadline.
	StoreTimeout time.Duration
	// RequestTimeout bounds an allocation request from its start to its answer
	// (default 5s), whatever it waits for: Redis, a lease extension, a reseed.
	RequestTimeout time.Duration
	// Observe, if set, hears after each allocation how many numbers its pool has
	// left: the refill worker's signal. It must be quick.
	Observe func(pool string, available int64)
}

// WithDefaults fills in the defaults of the fields left zero.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LeaseMin <= 0 {
		o.LeaseMin = 100
	}
	if o.LeaseMax < o.LeaseMin {
		o.LeaseMax = max(5_000, o.LeaseMin)
	}
	if o.LeaseHorizon <= 0 {
		o.LeaseHorizon = 2 * time.Second
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 10 * time.Second
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 3 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Observe == nil {
		o.Observe = func(string, int64) {}
	}
	return o
}

// Extension is a reservation ahead of need in flight; the requests that need
// it wait for Done, then read Err.
type Extension struct {
	Done chan struct{}
	Err  error
}
