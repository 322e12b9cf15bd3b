package distributed

import (
	"context"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// Store is the durable state the distributed engine shares with every other node.
// *store.Store satisfies it. The engine needs of it exactly:
//   - Pools, Pool and PutPool: the pools' configuration;
//   - Segments, AllSegments, OpenSegments, Segment, AddSegment and
//     CloseSegmentAt: the segments, their states and checkpointed cursors;
//   - ReserveAt, SaveCursors, Reseed and TrimRecovery: the high-water marks and
//     the recovery gaps of a reseed;
//   - Gaps, RecoveredBySegment and AddGapOutside: the numbers never to be handed out;
//   - FindIdempotencies, KeepIdempotencies and PurgeIdempotency: the durable
//     answers to requests with an idempotency key;
//   - PutUnsettled, DeleteUnsettled and OldUnsettled: the work to settle that a
//     node registers while Redis is away;
//   - Name and Ping: readiness.
type Store interface {
	Pools(ctx context.Context) ([]numberd.Pool, error)
	Pool(ctx context.Context, id string) (numberd.Pool, error)
	PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.Pool, bool, error)

	Segments(ctx context.Context, pool string) ([]numberd.Segment, error)
	AllSegments(ctx context.Context) (map[string][]numberd.Segment, error)
	OpenSegments(ctx context.Context, pools []string) (map[string][]numberd.Segment, error)
	Segment(ctx context.Context, pool string, id int64) (numberd.Segment, error)
	AddSegment(ctx context.Context, pool string, n numberd.NewSegment) (numberd.Segment, bool, error)
	CloseSegmentAt(ctx context.Context, pool string, epoch, id int64, state string, next int64, gap *numberd.Gap) (bool, error)

	ReserveAt(ctx context.Context, pool string, epoch int64, rs []store.Reservation, cs []store.Cursor) error
	SaveCursors(ctx context.Context, cs []store.Cursor) error
	Reseed(ctx context.Context, pool string, epoch, minGen int64, floors map[int64]int64) (int64, []numberd.Segment, []numberd.Gap, error)
	TrimRecovery(ctx context.Context, pool string, trims []store.Trim) error

	Gaps(ctx context.Context, pool string) ([]numberd.Gap, error)
	RecoveredBySegment(ctx context.Context) (map[int64]int64, error)
	AddGapOutside(ctx context.Context, g numberd.Gap) ([]numberd.Gap, error)

	FindIdempotencies(ctx context.Context, recs []store.IdempotencyRecord) ([]store.IdempotencyRecord, error)
	KeepIdempotencies(ctx context.Context, recs []store.IdempotencyRecord) ([]store.IdempotencyRecord, error)
	PurgeIdempotency(ctx context.Context) (int64, error)

	PutUnsettled(ctx context.Context, u store.Unsettled) error
	DeleteUnsettled(ctx context.Context, pool, id string) error
	OldUnsettled(ctx context.Context, age time.Duration, limit int) ([]store.Unsettled, error)

	Name() string
	Ping(ctx context.Context) error
}
