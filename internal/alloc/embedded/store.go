package embedded

import (
	"context"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// Store is the durable state the engine reads at Open and writes ahead of need.
// *store.Store satisfies it. The engine needs of it exactly:
//   - Pools and PutPool: the pools' configuration;
//   - Segments, AddSegment and CloseSegment: the segments and their states;
//   - Reserve, SaveCursors and ReleaseReservations: the high-water marks and
//     cursors that let a restart resume without handing a number out twice;
//   - Gaps and AddGap: the numbers that will never be handed out;
//   - Idempotency, PutIdempotency and PurgeIdempotency: the stored answers to
//     requests with an idempotency key;
//   - Name and Ping: readiness.
type Store interface {
	Pools(ctx context.Context) ([]numberd.Pool, error)
	PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.Pool, bool, error)

	Segments(ctx context.Context, pool string) ([]numberd.Segment, error)
	AddSegment(ctx context.Context, pool string, n numberd.NewSegment) (numberd.Segment, bool, error)
	CloseSegment(ctx context.Context, id int64, state string, next int64, gap *numberd.Gap) (bool, error)

	Reserve(ctx context.Context, rs []store.Reservation, cs []store.Cursor) error
	SaveCursors(ctx context.Context, cs []store.Cursor) error
	ReleaseReservations(ctx context.Context, cs []store.Cursor) error

	Gaps(ctx context.Context, pool string) ([]numberd.Gap, error)
	AddGap(ctx context.Context, g numberd.Gap) error

	Idempotency(ctx context.Context, pool, scope, key string) (store.IdempotencyRecord, bool, error)
	PutIdempotency(ctx context.Context, rec store.IdempotencyRecord) error
	PurgeIdempotency(ctx context.Context) (int64, error)

	Name() string
	Ping(ctx context.Context) error
}
