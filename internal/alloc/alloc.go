// Package alloc holds numberd's allocation engines: the rules by which numbers leave
// a pool, and the pool, segment and gap views that depend on the live allocation
// state. The embedded engine (Embedded) runs in-process over an SQLite store.
//
// Every engine keeps the invariants of docs/DESIGN.md: a number is handed out at
// most once; no number above a segment's durable high-water mark is handed out; an
// allocation is all or nothing; an idempotency key answers the same numbers again.
package alloc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

var (
	// ErrExhausted means the pool has fewer numbers left than asked for; none was
	// consumed.
	ErrExhausted = errors.New("alloc: pool exhausted")
	// ErrIdempotencyConflict means an idempotency key was reused for another request.
	ErrIdempotencyConflict = errors.New("alloc: idempotency key reused with a different request")
	// ErrInvalid means the request cannot be served as given; the wrapping text says why.
	ErrInvalid = errors.New("alloc: invalid")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("alloc: engine closed")
	// ErrUnavailable means Redis could not be reached or failed; nothing was consumed.
	ErrUnavailable = errors.New("alloc: redis unavailable")
	// ErrOutcomeUnknown means an allocate call's answer never came back (a timeout,
	// a lost connection, Redis paused): it may have taken numbers, but none was
	// handed out. The engine records what it took as an abandoned gap once Redis
	// answers again, or keeps it for the request's idempotency key, so a retry with
	// the same key is safe.
	ErrOutcomeUnknown = errors.New("alloc: outcome of the allocation unknown")
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

// fingerprint is the request's meaning after defaults: two requests with one key must
// have the same fingerprint to be the same request.
func (r Request) fingerprint() string { return "count=" + strconv.Itoa(r.Count) }

func (r Request) validate() error {
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

// encodeSpans writes spans compactly for an idempotency record: one
// "prefix:lo-hi" per span, separated by ";".
func encodeSpans(spans []segment.Range) string {
	var b strings.Builder
	for i, s := range spans {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(s.Prefix)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(s.Lo, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(s.Hi, 10))
	}
	return b.String()
}

func decodeSpans(text string, width int) ([]segment.Range, error) {
	var spans []segment.Range
	for part := range strings.SplitSeq(text, ";") {
		prefix, bounds, ok1 := strings.Cut(part, ":")
		lo, hi, ok2 := strings.Cut(bounds, "-")
		l, err1 := strconv.ParseInt(lo, 10, 64)
		h, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || l > h {
			return nil, fmt.Errorf("alloc: corrupt idempotency record %q", text)
		}
		spans = append(spans, segment.Range{Prefix: prefix, Lo: l, Hi: h, Width: width})
	}
	return spans, nil
}

// Segment states as the API shows them.
const (
	StateQueued    = "queued"
	StateActive    = "active"
	StateExhausted = "exhausted"
	StateRetired   = "retired"
)

// SegmentStatus is a segment with its live allocation state.
type SegmentStatus struct {
	store.Segment
	// State is StateQueued, StateActive, StateExhausted or StateRetired. An expired
	// segment is exhausted: its unused numbers are a gap.
	State string
	// Next is the suffix of the next number to hand out; above Range.Hi when used up.
	Next int64
	// Used counts the numbers handed out by allocations, gaps not included.
	Used int64
}

// PoolStatus is a pool's settings with its live allocation state.
type PoolStatus struct {
	store.Pool
	Available int64 // numbers that can still be handed out
	Issued    int64 // numbers taken by allocations
	Active    *SegmentStatus
	Queued    int
	Refill    RefillStatus
}

// Refill states.
const (
	RefillIdle       = "idle"
	RefillRequesting = "requesting"
	RefillFailed     = "failed"
)

// RefillStatus is the state of a pool's download of new segments.
type RefillStatus struct {
	State     string
	Ywlsh     string
	LastError string
	UpdatedAt time.Time
	// EffectiveThreshold is the threshold that starts a refill now: the pool's
	// own, or more when its pace and the download time call for an earlier start.
	EffectiveThreshold int64
}

// addSat adds without overflow: counts of up to 10^18 per segment can exceed an int64
// when summed over many segments.
func addSat(a, b int64) int64 {
	if b > 0 && a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

// DownError is a failed readiness check: the backing stores that did not answer.
type DownError struct {
	Stores []string
	Err    error
}

func (e *DownError) Error() string { return fmt.Sprintf("%s: %v", strings.Join(e.Stores, ", "), e.Err) }

func (e *DownError) Unwrap() error { return e.Err }
