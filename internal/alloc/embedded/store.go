package embedded

import (
	"context"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

// The engine reads its durable state at Open and writes it ahead of need. Open
// takes a *store.Store and uses it through the interfaces below, one for each
// part of the store, each holding exactly what the engine needs of that part.

// Pools is the pools' configuration: *store.Store is one.
type Pools interface {
	Pools(ctx context.Context) ([]numberd.Pool, error)
	PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (numberd.Pool, bool, error)
}

// Segments is the segments with their states, high-water marks and cursors,
// which let a restart resume without handing a number out twice: *store.Store
// is one.
type Segments interface {
	Segments(ctx context.Context, pool string) ([]numberd.Segment, error)
	AddSegment(ctx context.Context, pool string, n numberd.NewSegment) (numberd.Segment, bool, error)
	CloseSegment(ctx context.Context, id int64, state string, next int64, gap *numberd.Gap) (bool, error)

	Reserve(ctx context.Context, rs []store.Reservation, cs []store.Cursor) error
	SaveCursors(ctx context.Context, cs []store.Cursor) error
	ReleaseReservations(ctx context.Context, cs []store.Cursor) error
}

// Readiness is whether the store answers, and its name: *store.Store is one.
type Readiness interface {
	Name() string
	Ping(ctx context.Context) error
}

// Gaps is the numbers that will never be handed out: *store.Gaps is one.
type Gaps interface {
	List(ctx context.Context, pool string) ([]numberd.Gap, error)
	Add(ctx context.Context, g numberd.Gap) error
}

// Records is the stored answers to requests with an idempotency key:
// *store.Records is one.
type Records interface {
	Get(ctx context.Context, pool, scope, key string) (store.IdempotencyRecord, bool, error)
	Put(ctx context.Context, rec store.IdempotencyRecord) error
	Purge(ctx context.Context) (int64, error)
}

// stores is the store as the engine uses it, part by part.
type stores struct {
	pools    Pools
	segments Segments
	ready    Readiness
	gaps     Gaps
	records  Records
}

func storesOf(st *store.Store) stores {
	return stores{pools: st, segments: st, ready: st, gaps: st.Gaps(), records: st.Records()}
}
