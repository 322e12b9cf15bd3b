package numberd

import (
	"time"

	"github.com/numberd/numberd/internal/segment"
)

// Gap reasons.
const (
	GapRecovery = "recovery"
	GapExpired  = "expired"
	GapRetired  = "retired"
	// GapAbandoned holds numbers an allocate call took whose answer never reached
	// its caller (a timeout, a lost reply): known taken, never handed out.
	GapAbandoned = "abandoned"
)

// Gap is a run of a segment's numbers that will never be handed out.
type Gap struct {
	Pool      string
	SegmentID int64
	// Range holds the gap's numbers, a sub-range of the segment's.
	Range  segment.Range
	Reason string // GapRecovery, GapExpired, GapRetired or GapAbandoned
	At     time.Time
}

// Count is the number of numbers in the gap.
func (g Gap) Count() int64 { return g.Range.Size() }
