// This file holds what the worker asks of a segment source: the Upstream
// interface and its errors. httpupstream.go adapts it to the upstream protocol
// (package upstreamapi), which the simulator of package upstreamsim serves.

package refill

import (
	"context"
	"errors"
)

// Grant is what the upstream granted for one ywlsh: the range start..end
// (inclusive), numbers as decimal strings of the pool's width.
//
// An upstream reports what it answered, unchecked: the caller validates the range
// against the pool (segment.ParseRange) before it stores it.
type Grant struct {
	Ywlsh, Start, End string
}

// Upstream is a source of segments speaking the upstream protocol (package upstreamapi).
type Upstream interface {
	// Apply asks for quantity numbers for pool under the caller's ywlsh. Asking
	// again with the same ywlsh and quantity answers the same grant. An error
	// wrapping ErrRefused is final (the upstream answered 4xx: do not repeat this
	// ywlsh); any other error may be retried with the same ywlsh.
	Apply(ctx context.Context, pool string, quantity int64, ywlsh string) (Grant, error)
}

// ErrRefused is wrapped by an Apply error that is final: the upstream refused the
// request (a 4xx answer), and asking again with the same ywlsh cannot succeed.
var ErrRefused = errors.New("refill: upstream refused the request")
