package distributed

import (
	"context"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// The engine shares its durable state with every other node. Open takes a
// *store.Store and uses it through the interfaces below, one for each part of
// the store, each holding exactly what the engine needs of that part.

// Pools is the pools' configuration: *store.Store is one.
type Pools interface {
	Pools(ctx context.Context) ([]numberd.Pool, error)
	Pool(ctx context.Context, id string) (numberd.Pool, error)
	PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.Pool, bool, error)
}

// Segments is the segments, their states and checkpointed cursors:
// *store.Store is one.
type Segments interface {
	Segments(ctx context.Context, pool string) ([]numberd.Segment, error)
	AllSegments(ctx context.Context) (map[string][]numberd.Segment, error)
	OpenSegments(ctx context.Context, pools []string) (map[string][]numberd.Segment, error)
	Segment(ctx context.Context, pool string, id int64) (numberd.Segment, error)
	AddSegment(ctx context.Context, pool string, n numberd.NewSegment) (numberd.Segment, bool, error)
	SaveCursors(ctx context.Context, cs []store.Cursor) error
}

// Readiness is whether the store answers, and its name: *store.Store is one.
type Readiness interface {
	Name() string
	Ping(ctx context.Context) error
}

// Generations is the writes that hold only while a pool's Redis state is at
// the generation they carry (the high-water marks, segments' closes) and the
// reseeds that start a new one, with their recovery gaps: *store.Generations
// is one.
type Generations interface {
	ReserveAt(ctx context.Context, pool string, epoch int64, rs []store.Reservation, cs []store.Cursor) error
	CloseSegmentAt(ctx context.Context, pool string, epoch, id int64, state string, next int64, gap *numberd.Gap) (bool, error)
	Reseed(ctx context.Context, pool string, epoch, minGen int64, floors map[int64]int64) (int64, []numberd.Segment, []numberd.Gap, error)
	TrimRecovery(ctx context.Context, pool string, trims []store.Trim) error
}

// Gaps is the numbers never to be handed out: *store.Gaps is one.
type Gaps interface {
	List(ctx context.Context, pool string) ([]numberd.Gap, error)
	RecoveredBySegment(ctx context.Context) (map[int64]int64, error)
	AddOutside(ctx context.Context, g numberd.Gap) ([]numberd.Gap, error)
}

// Records is the durable answers to requests with an idempotency key:
// *store.Records is one.
type Records interface {
	Find(ctx context.Context, recs []store.IdempotencyRecord) ([]store.IdempotencyRecord, error)
	Keep(ctx context.Context, recs []store.IdempotencyRecord) ([]store.IdempotencyRecord, error)
	Purge(ctx context.Context) (int64, error)
}

// Backlog is the work to settle that a node registers while Redis is away:
// *store.Backlog is one.
type Backlog interface {
	Put(ctx context.Context, u store.Unsettled) error
	Delete(ctx context.Context, pool, id string) error
	Has(ctx context.Context, pool, id string) (bool, error)
	Old(ctx context.Context, age time.Duration, limit int) ([]store.Unsettled, error)
}

// stores is the store as the engine's parts use it, part by part.
type stores struct {
	pools    Pools
	segments Segments
	ready    Readiness
	gens     Generations
	gaps     Gaps
	records  Records
	backlog  Backlog
}

func storesOf(st *store.Store) stores {
	return stores{
		pools: st, segments: st, ready: st,
		gens: st.Generations(), gaps: st.Gaps(), records: st.Records(), backlog: st.Backlog(),
	}
}
