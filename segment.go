package numberd

import (
	"time"

	"github.com/numberd/numberd/internal/segment"
)

// Segment states as stored. "queued" and "active" are not stored: an open segment
// is active when it is the first open one of its pool.
const (
	SegmentOpen      = "open"
	SegmentExhausted = "exhausted"
	SegmentRetired   = "retired"
	SegmentExpired   = "expired"
)

// Segment states as the API shows them.
const (
	StatusQueued    = "queued"
	StatusActive    = "active"
	StatusExhausted = "exhausted"
	StatusRetired   = "retired"
)

// Segment sources.
const (
	SourceManual   = "manual"
	SourceUpstream = "upstream"
)

// Segment is a range of numbers granted to a pool, with its durable allocation state.
type Segment struct {
	ID    int64
	Pool  string
	Range segment.Range
	// State is SegmentOpen, SegmentExhausted, SegmentRetired or SegmentExpired.
	State  string
	Source string
	Ref    string
	Ywlsh  string
	// ExpiresAt, when set, is the moment after which no number of the segment may
	// be handed out.
	ExpiresAt time.Time
	// ReservedHi is the durable high-water mark: no suffix above it has been handed
	// out. Range.Lo-1 while nothing is reserved.
	ReservedHi int64
	// Next is the checkpointed cursor: every suffix below it is issued or in a gap.
	Next      int64
	CreatedAt time.Time
	// Epoch is the pool's seed generation as the read that returned the segment
	// found it, in the same statement: Next is a floor of what any Redis state of
	// that generation or a later one has used, but not of an older state, which a
	// reseed replaces only after it has moved Next up to where the new one starts.
	Epoch int64
}

// NewSegment describes a segment to add to a pool.
type NewSegment struct {
	Range     segment.Range
	Source    string
	Ref       string
	Ywlsh     string
	ExpiresAt time.Time
}

// SegmentStatus is a segment with its live allocation state.
type SegmentStatus struct {
	Segment
	// State is StatusQueued, StatusActive, StatusExhausted or StatusRetired. An
	// expired segment is exhausted: its unused numbers are a gap.
	State string
	// Next is the suffix of the next number to hand out; above Range.Hi when used up.
	Next int64
	// Used counts the numbers handed out by allocations, gaps not included.
	Used int64
}
