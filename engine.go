package numberd

import "context"

// Service is what numberd offers its callers and operators, as the HTTP API
// serves it: allocation, pools, segments, gaps and readiness.
type Service interface {
	// Allocate hands out req.Count numbers of req.Pool, all or none.
	Allocate(ctx context.Context, req Request) (Allocation, error)
	// PutPool creates or updates a pool, and says whether it created it.
	PutPool(ctx context.Context, id string, u PoolUpdate) (PoolStatus, bool, error)
	Pool(ctx context.Context, id string) (PoolStatus, error)
	// Pools lists every pool, ordered by id.
	Pools(ctx context.Context) ([]PoolStatus, error)
	// LoadSegment adds a segment to a pool after its others, and says whether it
	// added it (an identical segment loaded again is not added twice).
	LoadSegment(ctx context.Context, pool string, n NewSegment) (SegmentStatus, bool, error)
	Segments(ctx context.Context, pool string) ([]SegmentStatus, error)
	// RetireSegment stops a segment; its unused rest becomes a retired gap.
	RetireSegment(ctx context.Context, pool string, id int64) (SegmentStatus, error)
	Gaps(ctx context.Context, pool string) ([]Gap, error)
	// Ready reports whether the backing stores answer, with a *DownError if not.
	Ready(ctx context.Context) error
}

// Engine is an allocation engine: the Service, and what the refill worker and
// the process that runs it need besides. Both engines (embedded and distributed,
// under internal/alloc) keep one contract, which one test suite holds them to.
type Engine interface {
	Service
	// SegmentAdded takes in a segment the store holds already, stored by the
	// refill worker.
	SegmentAdded(ctx context.Context, seg Segment) error
	// Close stops the engine's background work and hands back what it reserved.
	Close(ctx context.Context) error
}
