// Package numberd holds what every layer of numberd shares: the domain (pools,
// segments of granted numbers, gaps of numbers that will never be handed out,
// allocation requests and answers, the statuses the API shows), the errors each
// layer may return and the others act on, and the interfaces the layers meet at.
// It imports nothing of numberd but the number arithmetic of internal/segment;
// the store, the allocation engines, the refill worker and the HTTP API import it.
//
// docs/DESIGN.md follows one number through the packages and says which package
// keeps which invariant.
package numberd

import "errors"

// Errors one layer returns and another acts on, tested with errors.Is. The
// wrapping text says which pool, segment or value, and why.
var (
	// ErrInvalid means a request or setting cannot be applied as given.
	ErrInvalid = errors.New("numberd: invalid")
	// ErrPoolNotFound means no pool has the given id.
	ErrPoolNotFound = errors.New("numberd: pool not found")
	// ErrSegmentNotFound means the pool has no segment with the given id.
	ErrSegmentNotFound = errors.New("numberd: segment not found")
	// ErrOverlap means a new segment shares numbers with a segment the pool has, or had.
	ErrOverlap = errors.New("numberd: segment overlaps an existing segment")
	// ErrExhausted means the pool has fewer numbers left than asked for; none was
	// consumed.
	ErrExhausted = errors.New("numberd: pool exhausted")
	// ErrIdempotencyConflict means an idempotency key was reused for another request.
	ErrIdempotencyConflict = errors.New("numberd: idempotency key reused with a different request")
	// ErrUnavailable means the durable store could not be reached or failed; its
	// text never carries a DSN.
	ErrUnavailable = errors.New("numberd: store unavailable")
	// ErrRedisUnavailable means Redis could not be reached or failed before an
	// allocate call was sent; nothing was consumed.
	ErrRedisUnavailable = errors.New("numberd: redis unavailable")
	// ErrOutcomeUnknown means an allocate call's answer never came back (a timeout,
	// a lost connection, Redis paused): it may have taken numbers, but none was
	// handed out. The engine records what it took as an abandoned gap once Redis
	// answers again, or keeps it for the request's idempotency key, so a retry with
	// the same key is safe.
	ErrOutcomeUnknown = errors.New("numberd: outcome of the allocation unknown")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("numberd: engine closed")
)
