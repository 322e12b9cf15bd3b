package refill

import (
	"context"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// Store is what the worker needs of the durable store: the pools' settings, the
// refill lock with its fencing token, and the download jobs written under it.
// *store.Store is one.
type Store interface {
	Pool(ctx context.Context, id string) (numberd.Pool, error)
	Pools(ctx context.Context) ([]numberd.Pool, error)

	AcquireRefillLock(ctx context.Context, pool, owner string, ttl time.Duration) (fence int64, err error)
	RenewRefillLock(ctx context.Context, pool, owner string, fence int64, ttl time.Duration) error
	ReleaseRefillLock(ctx context.Context, pool, owner string, fence int64) error

	OpenJob(ctx context.Context, pool string) (store.Job, bool, error)
	LatestJob(ctx context.Context, pool string) (store.Job, bool, error)
	CreateJob(ctx context.Context, pool string, fence int64, ywlsh string, quantity int64) (store.Job, error)
	UpdateJob(ctx context.Context, pool string, fence, id int64, attempts int, lastError, state string) error
	CompleteJob(ctx context.Context, pool string, fence, id int64, n numberd.NewSegment) (numberd.Segment, error)
}

var _ Store = (*store.Store)(nil)
