package refill

import (
	"context"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// The worker takes a *store.Store in its Config and uses it through the
// interfaces below, one for each part of the store, each holding exactly what
// the worker needs of that part.

// Pools is the pools' settings: *store.Store is one.
type Pools interface {
	Pool(ctx context.Context, id string) (numberd.Pool, error)
	Pools(ctx context.Context) ([]numberd.Pool, error)
}

// Refills is the refill lock with its fencing token, and the download jobs
// written under it: *store.Refills is one.
type Refills interface {
	AcquireLock(ctx context.Context, pool, owner string, ttl time.Duration) (fence int64, err error)
	RenewLock(ctx context.Context, pool, owner string, fence int64, ttl time.Duration) error
	ReleaseLock(ctx context.Context, pool, owner string, fence int64) error

	OpenJob(ctx context.Context, pool string) (store.Job, bool, error)
	LatestJob(ctx context.Context, pool string) (store.Job, bool, error)
	CreateJob(ctx context.Context, pool string, fence int64, ywlsh string, quantity int64) (store.Job, error)
	UpdateJob(ctx context.Context, pool string, fence, id int64, attempts int, lastError, state string) error
	CompleteJob(ctx context.Context, pool string, fence, id int64, n numberd.NewSegment) (numberd.Segment, error)
}
