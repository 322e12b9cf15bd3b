package numberd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/numberd/numberd/internal/segment"
)

// Allocation limits.
const (
	MaxCount = 1000
	// IdempotencyTTL is how long an idempotency key answers the same numbers again.
	IdempotencyTTL = 24 * time.Hour
)

// Request asks for Count numbers of Pool.
type Request struct {
	Pool  string
	Count int
	// Idempotency, if set, makes the request safe to repeat.
	Idempotency *Idempotency
}

// Idempotency identifies a repeatable request: Key as the caller sent it, scoped to
// the caller (Scope, a digest of its credential) and to the pool.
type Idempotency struct {
	Scope string
	Key   string
}

// Fingerprint is the request's meaning after defaults: two requests with one key
// must have the same fingerprint to be the same request.
func (r Request) Fingerprint() string { return "count=" + strconv.Itoa(r.Count) }

// Validate refuses a request no engine can serve, with ErrInvalid.
func (r Request) Validate() error {
	if r.Count < 1 || r.Count > MaxCount {
		return fmt.Errorf("%w: count must be 1..%d, got %d", ErrInvalid, MaxCount, r.Count)
	}
	return nil
}

// Allocation is an allocation's answer: its numbers as ascending runs, each run a
// sub-range of one segment.
type Allocation struct {
	Pool     string
	Spans    []segment.Range
	Replayed bool // answered again for an idempotency key; nothing was consumed
}

// Count is how many numbers the allocation holds.
func (a Allocation) Count() int64 {
	var n int64
	for _, s := range a.Spans {
		n += s.Size()
	}
	return n
}

// Numbers formats the allocation's numbers in ascending order.
func (a Allocation) Numbers() []string {
	out := make([]string, 0, a.Count())
	for _, s := range a.Spans {
		for n := s.Lo; n <= s.Hi; n++ {
			out = append(out, s.Format(n))
		}
	}
	return out
}

// DownError is a failed readiness check: the backing stores that did not answer.
type DownError struct {
	Stores []string
	Err    error
}

func (e *DownError) Error() string { return fmt.Sprintf("%s: %v", strings.Join(e.Stores, ", "), e.Err) }

func (e *DownError) Unwrap() error { return e.Err }
